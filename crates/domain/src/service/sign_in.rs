//! The embedded sign-in: creating an account with a password and checking a password, with the
//! same work and the same answer whether or not the account exists; the sessions refresh tokens
//! stand for (rotation, reuse detection, sign-out) and password changes, which end sessions.

use std::sync::Arc;

use secrecy::SecretString;

use crate::error::DomainError;
use crate::password::check_policy;
use crate::ports::{Clock, PasswordHasher, SessionRepository, UserRepository};
use crate::service::users::UserService;
use crate::session::{NewSession, PresentedSession, RefreshOutcome, SessionState};
use crate::user::{Email, NewUser, User, UserId};

/// Sign-in use cases over the user service and the password hasher.
#[derive(Clone)]
pub struct SignInService {
    users: UserService,
    repository: Arc<dyn UserRepository>,
    passwords: Arc<dyn PasswordHasher>,
    sessions: Arc<dyn SessionRepository>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for SignInService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignInService").finish_non_exhaustive()
    }
}

impl SignInService {
    /// A service creating users through `users`, reading password hashes, hashing and telling
    /// the time through the same ports as `users`, and storing sessions in `sessions`.
    pub fn new(users: UserService, sessions: Arc<dyn SessionRepository>) -> Self {
        Self {
            repository: Arc::clone(&users.users),
            passwords: Arc::clone(&users.passwords),
            clock: Arc::clone(&users.clock),
            users,
            sessions,
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

    /// Stores the session of a new sign-in (its family is new).
    pub async fn start_session(&self, session: &NewSession) -> Result<(), DomainError> {
        Ok(self.sessions.create(session).await?)
    }

    /// Exchanges the presented session for `next` (same user, same family). Refused when the
    /// session is unknown, someone else's, of another family, revoked or expired. When it was
    /// already rotated, or a concurrent rotation of it won, the token is being reused: every
    /// session of its family is revoked.
    pub async fn refresh(
        &self,
        presented: &PresentedSession,
        next: &NewSession,
    ) -> Result<RefreshOutcome, DomainError> {
        let Some(stored) = self.sessions.get(&presented.id).await? else {
            return Ok(RefreshOutcome::Refused);
        };
        if !stored.matches(presented.user, &presented.family)
            || next.user != stored.user
            || next.family != stored.family
        {
            return Ok(RefreshOutcome::Refused);
        }
        let now = self.clock.now();
        match stored.state(now) {
            SessionState::Revoked | SessionState::Expired => Ok(RefreshOutcome::Refused),
            SessionState::Replaced => self.reused(&stored.family, now).await,
            SessionState::Live => {
                if self.sessions.rotate(&stored.id, next, now).await? {
                    Ok(RefreshOutcome::Rotated)
                } else {
                    self.reused(&stored.family, now).await
                }
            }
        }
    }

    async fn reused(
        &self,
        family: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<RefreshOutcome, DomainError> {
        let revoked = self.sessions.revoke_family(family, now).await?;
        log::warn!(target: "signin", "refresh token reused: its session family was revoked ({revoked} sessions)");
        Ok(RefreshOutcome::ReuseDetected)
    }

    /// Signs out: revokes the presented session's family. `false` when no stored session of
    /// that user and family has that id (nothing changed); `true` otherwise, also when the
    /// family was already revoked (signing out twice is harmless).
    pub async fn end_session(&self, presented: &PresentedSession) -> Result<bool, DomainError> {
        let Some(stored) = self.sessions.get(&presented.id).await? else {
            return Ok(false);
        };
        if !stored.matches(presented.user, &presented.family) {
            return Ok(false);
        }
        self.sessions
            .revoke_family(&stored.family, self.clock.now())
            .await?;
        Ok(true)
    }

    /// Changes the password of `user` who proves the current one: `Ok(false)` (nothing changed)
    /// when `current` is wrong; a `new` password breaking the policy is refused before any
    /// hashing. On success every session of the user is revoked.
    pub async fn change_password(
        &self,
        user: UserId,
        current: &SecretString,
        new: &SecretString,
    ) -> Result<bool, DomainError> {
        check_policy(new).map_err(DomainError::PasswordPolicy)?;
        let stored = self.repository.password_hash(user).await?;
        if !self.passwords.verify(current, stored).await {
            return Ok(false);
        }
        self.set_password(user, new).await?;
        Ok(true)
    }

    /// Sets the password of `user` (the policy applies) and revokes every session of the user;
    /// answers how many sessions were revoked.
    pub async fn set_password(&self, user: UserId, new: &SecretString) -> Result<u64, DomainError> {
        check_policy(new).map_err(DomainError::PasswordPolicy)?;
        let hash = self
            .passwords
            .hash(new)
            .await
            .map_err(|e| DomainError::Internal(e.to_string()))?;
        self.repository.set_password_hash(user, hash).await?;
        Ok(self.sessions.revoke_user(user, self.clock.now()).await?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use chrono::{DateTime, Duration, TimeZone, Utc};

    use super::*;
    use crate::ports::{
        MockCapabilityRepository, MockClock, MockEntitlementsProvider, MockOnboardingRepository,
        MockPasswordHasher, MockPreferenceRepository, MockSessionRepository, MockUserRepository,
    };
    use crate::service::users::UserPorts;
    use crate::session::Session;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 4, 8, 0, 0).unwrap()
    }

    fn clock() -> Arc<MockClock> {
        let mut clock = MockClock::new();
        clock.expect_now().returning(now);
        Arc::new(clock)
    }

    fn service(
        sessions: MockSessionRepository,
        repository: MockUserRepository,
        passwords: MockPasswordHasher,
    ) -> SignInService {
        let users = UserService::new(UserPorts {
            users: Arc::new(repository),
            preferences: Arc::new(MockPreferenceRepository::new()),
            onboarding: Arc::new(MockOnboardingRepository::new()),
            capabilities: Arc::new(MockCapabilityRepository::new()),
            entitlements: Arc::new(MockEntitlementsProvider::new()),
            passwords: Arc::new(passwords),
            clock: clock(),
        });
        SignInService::new(users, Arc::new(sessions))
    }

    /// The service over `sessions` alone: no user or password call is expected.
    fn session_service(sessions: MockSessionRepository) -> SignInService {
        service(
            sessions,
            MockUserRepository::new(),
            MockPasswordHasher::new(),
        )
    }

    /// What refreshing session `s1` of its owner (user 7) into [`next`] answers over `sessions`.
    async fn refresh_by_owner(sessions: MockSessionRepository) -> RefreshOutcome {
        session_service(sessions)
            .refresh(&presented(7), &next())
            .await
            .unwrap()
    }

    fn stored(replaced: bool) -> Session {
        Session {
            id: "s1".into(),
            family: "f".into(),
            user: UserId(7),
            created_at: now() - Duration::hours(1),
            expires_at: now() + Duration::days(6),
            replaced_at: replaced.then(now),
            revoked_at: None,
        }
    }

    fn presented(user: i64) -> PresentedSession {
        PresentedSession {
            user: UserId(user),
            id: "s1".into(),
            family: "f".into(),
        }
    }

    fn next() -> NewSession {
        NewSession {
            id: "s2".into(),
            family: "f".into(),
            user: UserId(7),
            expires_at: now() + Duration::days(7),
        }
    }

    #[tokio::test]
    async fn a_live_session_rotates() {
        let mut sessions = MockSessionRepository::new();
        sessions.expect_get().returning(|_| Ok(Some(stored(false))));
        sessions
            .expect_rotate()
            .withf(|old, next, _| old == "s1" && next.id == "s2")
            .times(1)
            .returning(|_, _, _| Ok(true));
        sessions.expect_revoke_family().never();
        let outcome = refresh_by_owner(sessions).await;
        assert_eq!(outcome, RefreshOutcome::Rotated);
    }

    #[tokio::test]
    async fn a_replaced_session_presented_again_revokes_its_family() {
        let mut sessions = MockSessionRepository::new();
        sessions.expect_get().returning(|_| Ok(Some(stored(true))));
        sessions.expect_rotate().never();
        sessions
            .expect_revoke_family()
            .withf(|family, _| family == "f")
            .times(1)
            .returning(|_, _| Ok(2));
        let outcome = refresh_by_owner(sessions).await;
        assert_eq!(outcome, RefreshOutcome::ReuseDetected);
    }

    #[tokio::test]
    async fn losing_a_concurrent_rotation_counts_as_reuse() {
        let mut sessions = MockSessionRepository::new();
        sessions.expect_get().returning(|_| Ok(Some(stored(false))));
        sessions.expect_rotate().returning(|_, _, _| Ok(false));
        sessions
            .expect_revoke_family()
            .times(1)
            .returning(|_, _| Ok(2));
        let outcome = refresh_by_owner(sessions).await;
        assert_eq!(outcome, RefreshOutcome::ReuseDetected);
    }

    #[tokio::test]
    async fn someone_elses_or_an_unknown_session_is_refused_without_writing() {
        let mut sessions = MockSessionRepository::new();
        sessions
            .expect_get()
            .returning(|id| Ok((id == "s1").then(|| stored(true))));
        sessions.expect_rotate().never();
        sessions.expect_revoke_family().never();
        let service = session_service(sessions);
        let outcome = service.refresh(&presented(8), &next()).await.unwrap();
        assert_eq!(outcome, RefreshOutcome::Refused);
        assert!(!service.end_session(&presented(8)).await.unwrap());
        let mut unknown = presented(7);
        unknown.id = "nope".into();
        assert_eq!(
            service.refresh(&unknown, &next()).await.unwrap(),
            RefreshOutcome::Refused
        );
    }

    #[tokio::test]
    async fn a_wrong_current_password_changes_nothing() {
        let mut repository = MockUserRepository::new();
        repository
            .expect_password_hash()
            .returning(|_| Ok(Some(SecretString::from("$argon2id$stored"))));
        repository.expect_set_password_hash().never();
        let mut passwords = MockPasswordHasher::new();
        passwords.expect_verify().returning(|_, _| false);
        passwords.expect_hash().never();
        let mut sessions = MockSessionRepository::new();
        sessions.expect_revoke_user().never();
        let service = service(sessions, repository, passwords);
        let changed = service
            .change_password(
                UserId(7),
                &SecretString::from("Wrong-Horse-9-battery"),
                &SecretString::from("Another-Staple-7-horse"),
            )
            .await
            .unwrap();
        assert!(!changed);
    }

    #[tokio::test]
    async fn a_new_password_revokes_every_session_of_the_user() {
        let mut repository = MockUserRepository::new();
        repository
            .expect_set_password_hash()
            .times(1)
            .returning(|_, _| Ok(()));
        let mut passwords = MockPasswordHasher::new();
        passwords
            .expect_hash()
            .returning(|_| Ok(SecretString::from("$argon2id$new")));
        let mut sessions = MockSessionRepository::new();
        sessions
            .expect_revoke_user()
            .withf(|user, _| *user == UserId(7))
            .times(1)
            .returning(|_, _| Ok(3));
        let service = service(sessions, repository, passwords);
        let revoked = service
            .set_password(UserId(7), &SecretString::from("Another-Staple-7-horse"))
            .await
            .unwrap();
        assert_eq!(revoked, 3);
    }
}
