//! The command line as clap reads it: the commands, their arguments, and the environment every
//! command's `--help` lists.

use clap::{Parser, Subcommand};

use crate::config;

/// The user-service: broker credentials encrypted at rest, behind a JWT + entitlements API.
#[derive(Debug, Parser)]
#[command(name = "user-service", version, about)]
pub struct Cli {
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// A command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage encryption keys.
    Keys {
        /// What to do with keys.
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Grant a capability to a user (id or e-mail).
    Grant {
        /// User id or e-mail.
        user: String,
        /// Capability code: can.use_users, can.manage_users or can.route_orders.
        capability: String,
        /// Grant a code this service does not know (for another service of the platform).
        #[arg(long)]
        force: bool,
    },
    /// Revoke a capability from a user (id or e-mail).
    Revoke {
        /// User id or e-mail.
        user: String,
        /// Capability code, e.g. can.use_users.
        capability: String,
    },
    /// Show, close or open cut-over mode: whether rows without a binding tag (written by the
    /// Python service) are read.
    Cutover {
        /// What to do with cut-over mode.
        #[command(subcommand)]
        command: CutoverCommand,
    },
    /// Manage users.
    Users {
        /// What to do with users.
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Run the post-deployment checks against a running deployment: one PASS/FAIL line per
    /// check, non-zero exit on any failure. Uses the server's environment to create a test user.
    Smoke {
        /// Base URL of the deployment, e.g. http://127.0.0.1:8000.
        base_url: String,
        /// Run the credential checks as this token's user instead of creating a test user
        /// (prefer the SMOKE_TOKEN variable: arguments are visible in the process list).
        #[arg(long, env = "SMOKE_TOKEN", hide_env_values = true, value_parser = secret_arg)]
        token: Option<secrecy::SecretString>,
        /// Do not create a test user; without --token only /health and /ready are checked.
        #[arg(long)]
        no_create_user: bool,
    },
}

/// Key commands.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Print one new key on stdout (the format of Python's `Fernet.generate_key()`).
    Generate,
    /// Re-encrypt every credential row under the primary key (idempotent, resumable).
    Rotate {
        /// Start after this row id (resume a run that was stopped).
        #[arg(long, default_value_t = 0)]
        after_id: i64,
    },
    /// Decrypt every row and report counts per key id and failures (no values).
    Verify,
}

/// Cut-over commands.
#[derive(Debug, Subcommand)]
pub enum CutoverCommand {
    /// Print the mode, since when, and how many rows have no binding tag.
    Status,
    /// Stop reading rows without a binding tag. Verifies every row first and refuses (non-zero
    /// exit, nothing changed) while any is unbound or fails verification.
    Close,
    /// Read rows without a binding tag again (audited), for a Python service that must write
    /// again. Close it again as soon as possible.
    Open,
}

/// User commands.
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create an active user; prints its id, and with --print-token an access token alone on the
    /// last line.
    Create {
        /// E-mail address.
        #[arg(long)]
        email: String,
        /// Password for the embedded sign-in (stored as an argon2id hash; same rules as
        /// `POST /auth/register`). Without it the user can only use tokens issued elsewhere.
        #[arg(long, value_parser = secret_arg)]
        password: Option<secrecy::SecretString>,
        /// Also grant can.manage_users.
        #[arg(long)]
        operator: bool,
        /// Print an access token (15 minutes) on the last line.
        #[arg(long)]
        print_token: bool,
    },
    /// Print a new access token (15 minutes) for an existing user (id or e-mail), alone on one
    /// line: what `create --print-token` prints, for a user created earlier. Signed with the
    /// server's JWT secret (JWT_SECRET, or the development secret in the data directory).
    Token {
        /// The user's id or e-mail address.
        user: String,
    },
    /// Set a user's password for the embedded sign-in (same rules as `POST /auth/register`) and
    /// end every session of the user: its refresh tokens stop working at once.
    SetPassword {
        /// The user's id or e-mail address.
        user: String,
        /// The new password (as with `users create`; prefer --password-stdin: arguments are
        /// visible in the process list).
        #[arg(long, value_parser = secret_arg, required_unless_present = "password_stdin")]
        password: Option<secrecy::SecretString>,
        /// Read the new password from the first line of standard input.
        #[arg(long, conflicts_with = "password")]
        password_stdin: bool,
    },
}

/// The command line with, under every command's `--help`, the environment variables it reads:
/// every command is configured like the server (the settings of `docs/configuration.md`).
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    let environment = environment_help();
    with_help(Cli::command(), &environment)
}

fn with_help(command: clap::Command, text: &str) -> clap::Command {
    let text = text.to_owned();
    command
        .after_help(text.clone())
        .mut_subcommands(move |sub| with_help(sub, &text))
}

/// The text listing the variables: the declared settings, then the secrets.
fn environment_help() -> String {
    let settings: Vec<&str> = config::DECLARED.iter().map(|d| d.variable).collect();
    format!(
        "Environment (read by every command, as by the server; docs/configuration.md):\n  \
         {}\n  secrets: BROKER_CREDENTIALS_ENCRYPTION_KEY, JWT_SECRET, DATABASE_URL (each also \
         as *_FILE); VAULT_* or DOPPLER_* with SECRET_MANAGER_PROVIDER; RUST_LOG",
        settings.join(", ")
    )
}

/// Reads a secret argument straight into a [`secrecy::SecretString`] (so that `Debug` of the
/// parsed command shows `[REDACTED]`).
fn secret_arg(value: &str) -> Result<secrecy::SecretString, std::convert::Infallible> {
    Ok(secrecy::SecretString::from(value))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    #[test]
    fn every_commands_help_lists_the_environment_it_reads() {
        let mut root = super::command();
        let paths: &[&[&str]] = &[
            &[],
            &["serve"],
            &["migrate"],
            &["keys", "rotate"],
            &["cutover", "close"],
            &["users", "create"],
            &["users", "token"],
            &["users", "set-password"],
            &["grant"],
            &["smoke"],
        ];
        for path in paths {
            let mut command = &mut root;
            for name in *path {
                command = command
                    .find_subcommand_mut(name)
                    .unwrap_or_else(|| panic!("no command {path:?}"));
            }
            let help = command.render_help().to_string();
            for variable in [
                "APP_ENV",
                "DATABASE_URL",
                "USER_SERVICE_DATA_DIR",
                "JWT_SECRET",
                "BROKER_CREDENTIALS_ENCRYPTION_KEY",
            ] {
                assert!(
                    help.contains(variable),
                    "{path:?} --help lacks {variable}:\n{help}"
                );
            }
        }
    }
}
