//! The command line (SPEC §9). Each command is configured by the same environment as the server.

use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;
use user_service_domain::{Capability, Email, NewUser, RepositoryError, UserId};

use crate::settings::Settings;
use crate::startup::{connect_for_command as connect, StartupError};

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
        /// Capability code, e.g. can.manage_users.
        capability: String,
    },
    /// Revoke a capability from a user (id or e-mail).
    Revoke {
        /// User id or e-mail.
        user: String,
        /// Capability code, e.g. can.use_users.
        capability: String,
    },
    /// Manage users.
    Users {
        /// What to do with users.
        #[command(subcommand)]
        command: UsersCommand,
    },
    // --- smoke (deployment checks, src/smoke.rs) ---
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
    // --- end smoke ---
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
}

/// A command failed; the message is printed on stderr as one line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CommandError(pub String);

impl From<StartupError> for CommandError {
    fn from(error: StartupError) -> Self {
        Self(error.to_string())
    }
}

impl From<RepositoryError> for CommandError {
    fn from(error: RepositoryError) -> Self {
        Self(error.to_string())
    }
}

/// Runs a command other than `serve`, writing its output to `out`.
pub fn run(
    command: Command,
    settings: &Settings,
    out: &mut dyn std::io::Write,
) -> Result<(), CommandError> {
    let io = |e: std::io::Error| CommandError(e.to_string());
    match command {
        Command::Serve => Err(CommandError("serve is handled by main".into())),
        Command::Migrate => {
            let database = connect(settings, false)?;
            let applied = database
                .run_migrations()
                .map_err(|e| CommandError(e.to_string()))?;
            writeln!(out, "applied {} migration(s)", applied.len()).map_err(io)
        }
        Command::Keys {
            command: KeysCommand::Rotate { after_id },
        } => crate::rotation::rotate(settings, after_id, out),
        Command::Keys {
            command: KeysCommand::Verify,
        } => crate::rotation::verify(settings, out),
        Command::Keys {
            command: KeysCommand::Generate,
        } => writeln!(
            out,
            "{}",
            user_service_crypto::KeyRing::generate_key().expose_secret()
        )
        .map_err(io),
        Command::Grant { user, capability } => {
            set_capability(settings, &user, &capability, true, out)
        }
        Command::Revoke { user, capability } => {
            set_capability(settings, &user, &capability, false, out)
        }
        Command::Users {
            command:
                UsersCommand::Create {
                    email,
                    password,
                    operator,
                    print_token,
                },
        } => create_user(settings, &email, password, operator, print_token, out),
        // --- smoke ---
        Command::Smoke {
            base_url,
            token,
            no_create_user,
        } => crate::smoke::run(
            settings,
            crate::smoke::SmokeOptions {
                base_url,
                token,
                create_user: !no_create_user,
            },
            out,
        ),
        // --- end smoke ---
    }
}

fn set_capability(
    settings: &Settings,
    user: &str,
    capability: &str,
    granted: bool,
    out: &mut dyn std::io::Write,
) -> Result<(), CommandError> {
    let capability = Capability::parse(capability)
        .ok_or_else(|| CommandError(format!("invalid capability code: {capability:?}")))?;
    let database = connect(settings, settings.run_migrations())?;
    let repositories = crate::startup::Repositories::new(&database);
    let id = match user.parse::<i64>() {
        Ok(id) => repositories.users.get(UserId(id)).map(|u| u.id),
        Err(_) => {
            let email = Email::parse(user).map_err(|e| CommandError(e.to_string()))?;
            repositories
                .users
                .find_by_email(&email)?
                .map(|u| u.id)
                .ok_or(RepositoryError::NotFound)
        }
    }
    .map_err(|e| match e {
        RepositoryError::NotFound => CommandError(format!("user not found: {user}")),
        other => other.into(),
    })?;
    repositories.capabilities.set(id, &capability, granted)?;
    let verb = if granted { "granted" } else { "revoked" };
    writeln!(out, "{verb} {capability} for user {id}").map_err(|e| CommandError(e.to_string()))
}

/// Reads a secret argument straight into a [`secrecy::SecretString`] (so that `Debug` of the
/// parsed command shows `[REDACTED]`).
fn secret_arg(value: &str) -> Result<secrecy::SecretString, std::convert::Infallible> {
    Ok(secrecy::SecretString::from(value))
}

/// The argon2id hash of `password` after checking the sign-in password rules.
fn password_hash(password: &secrecy::SecretString) -> Result<secrecy::SecretString, CommandError> {
    let broken = crate::password::broken_rules(password);
    if !broken.is_empty() {
        return Err(CommandError(crate::password::policy_message(&broken)));
    }
    crate::password::hash(password).map_err(|e| CommandError(e.to_string()))
}

fn create_user(
    settings: &Settings,
    email: &str,
    password: Option<secrecy::SecretString>,
    operator: bool,
    print_token: bool,
    out: &mut dyn std::io::Write,
) -> Result<(), CommandError> {
    let email = Email::parse(email).map_err(|e| CommandError(e.to_string()))?;
    let password_hash = password.as_ref().map(password_hash).transpose()?;
    let tokens = if print_token {
        let source = crate::secrets::source_for(&settings.secret_manager_provider)
            .map_err(|e| CommandError(e.to_string()))?;
        let secret =
            crate::keys::load_jwt_secret(settings, source.as_ref()).map_err(CommandError)?;
        Some(crate::auth::TokenCodec::new(
            &secret,
            settings.jwt_issuer.clone(),
            settings.jwt_audience.clone(),
        ))
    } else {
        None
    };
    let database = connect(settings, settings.run_migrations())?;
    let repositories = crate::startup::Repositories::new(&database);
    let mut new_user = NewUser::with_email(email);
    new_user.is_active = true;
    let user = repositories
        .users
        .create(&new_user, password_hash)
        .map_err(|e| match e {
            RepositoryError::Conflict(_) => CommandError("Email already registered".into()),
            other => other.into(),
        })?;
    if operator {
        repositories
            .capabilities
            .set(user.id, &Capability::manage_users(), true)?;
    }
    let io = |e: std::io::Error| CommandError(e.to_string());
    writeln!(out, "{}", user.id).map_err(io)?;
    if let Some(tokens) = tokens {
        let token = tokens.issue(user.id, crate::auth::TokenKind::Access);
        writeln!(out, "{}", token.expose_secret()).map_err(io)?;
    }
    Ok(())
}
