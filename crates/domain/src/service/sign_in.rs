//! The embedded sign-in: creating an account with a password and checking a password, with the
//! same work and the same answer whether or not the account exists.

use std::sync::Arc;

use secrecy::SecretString;

use crate::error::DomainError;
use crate::ports::{PasswordHasher, UserRepository};
use crate::service::users::UserService;
use crate::user::{Email, NewUser, User, UserId};

/// Sign-in use cases over the user service and the password hasher.
#[derive(Clone)]
pub struct SignInService {
    users: UserService,
    repository: Arc<dyn UserRepository>,
    passwords: Arc<dyn PasswordHasher>,
}

impl std::fmt::Debug for SignInService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignInService").finish_non_exhaustive()
    }
}

impl SignInService {
    /// A service creating users through `users` and reading password hashes from `repository`.
    pub fn new(
        users: UserService,
        repository: Arc<dyn UserRepository>,
        passwords: Arc<dyn PasswordHasher>,
    ) -> Self {
        Self {
            users,
            repository,
            passwords,
        }
    }

    /// Creates an active account with a password (checked against the policy, then hashed).
    /// The hash is computed before the insert, so a taken e-mail costs the same time as a new
    /// one.
    pub async fn register(
        &self,
        email: Email,
        password: &SecretString,
    ) -> Result<User, DomainError> {
        let mut user = NewUser::with_email(email);
        user.is_active = true;
        self.users.create(user, Some(password)).await
    }

    /// The account `email` signs in to with `password`, or `None` for a wrong password, an
    /// unknown e-mail and an account without a password alike — after the same hashing work.
    pub async fn check_password(
        &self,
        email: &Email,
        password: &SecretString,
    ) -> Result<Option<UserId>, DomainError> {
        let Some(user) = self.repository.find_by_email(email).await? else {
            self.passwords.verify(password, None).await;
            return Ok(None);
        };
        let stored = self.repository.password_hash(user.id).await?;
        let matches = self.passwords.verify(password, stored).await;
        Ok(matches.then_some(user.id))
    }
}
