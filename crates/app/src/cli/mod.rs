//! The command line: one module per command. Each command is configured by the same
//! environment as the server and reaches the database through the same domain services.
//!
//! `args` declares the command line, `context` what every command works with; this module only
//! hands each command to its module.

mod args;
mod context;
mod cutover;
mod keys;
mod progress;
pub mod smoke;
mod users;

use user_service_domain::chain;

use crate::config::Settings;

pub use args::{command, Cli, Command, CutoverCommand, KeysCommand, UsersCommand};
pub use context::{CommandError, Context};

/// Runs a command other than `serve`, writing its output to `out`.
pub async fn run(
    command: Command,
    settings: &Settings,
    out: &mut dyn std::io::Write,
) -> Result<(), CommandError> {
    let mut context = Context::new(settings);
    match command {
        Command::Serve => Err(CommandError("serve is handled by main".into())),
        Command::Migrate => {
            let database = crate::startup::connect_unchecked(settings).await?;
            let applied = database
                .run_migrations()
                .await
                .map_err(|e| CommandError(chain(&e)))?;
            writeln!(out, "applied {} migration(s)", applied.len())?;
            Ok(())
        }
        Command::Keys { command } => keys::run(&mut context, command, out).await,
        Command::Grant {
            user,
            capability,
            force,
        } => users::set_capability(&mut context, &user, &capability, true, force, out).await,
        Command::Revoke { user, capability } => {
            users::set_capability(&mut context, &user, &capability, false, true, out).await
        }
        Command::Cutover { command } => cutover::run(&mut context, command, out).await,
        Command::Users { command } => users::run(&mut context, command, out).await,
        Command::Smoke {
            base_url,
            token,
            no_create_user,
        } => {
            smoke::run(
                &mut context,
                smoke::SmokeOptions {
                    base_url,
                    token,
                    create_user: !no_create_user,
                },
                out,
            )
            .await
        }
    }
}
