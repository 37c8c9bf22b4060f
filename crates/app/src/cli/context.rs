//! What every command works with: the settings, the secrets and the domain services (opened on
//! first use), and the one error type commands return.

use user_service_domain::{chain, DomainError};

use crate::config::{self, Secrets, Settings};
use crate::startup::{connect_for_command, Services, StartupError};

/// A command failed; the message is printed on stderr as one line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CommandError(pub String);

impl From<StartupError> for CommandError {
    fn from(error: StartupError) -> Self {
        Self(chain(&error))
    }
}

impl From<DomainError> for CommandError {
    fn from(error: DomainError) -> Self {
        Self(chain(&error))
    }
}

impl From<std::io::Error> for CommandError {
    fn from(error: std::io::Error) -> Self {
        Self(error.to_string())
    }
}

/// What a command works with: the settings, and (once asked for) the secrets and the domain
/// services over the database.
pub struct Context<'a> {
    /// The configuration.
    pub settings: &'a Settings,
    secrets: Option<Secrets>,
    services: Option<Services>,
}

impl std::fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").finish_non_exhaustive()
    }
}

impl<'a> Context<'a> {
    /// A context for `settings`; the database is opened on first use.
    pub fn new(settings: &'a Settings) -> Self {
        Self {
            settings,
            secrets: None,
            services: None,
        }
    }

    /// The key ring and the JWT secret, read on first use (a misconfigured key is logged then).
    pub fn secrets(&mut self) -> &Secrets {
        self.secrets
            .get_or_insert_with(|| config::load(self.settings))
    }

    /// The domain services over the database (migrated first when the settings say so).
    pub async fn services(&mut self) -> Result<&Services, CommandError> {
        if self.services.is_none() {
            let database =
                connect_for_command(self.settings, self.settings.run_migrations()).await?;
            let services = Services::new(&database, self.settings, self.secrets())?;
            self.services = Some(services);
        }
        self.services
            .as_ref()
            .ok_or_else(|| CommandError("no database".into()))
    }
}
