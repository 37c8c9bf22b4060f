//! The user use cases: registration and creation, profile, activation, deletion, preferences,
//! onboarding and capability grants. Every way of creating a user (the API, the sign-in page,
//! the command line) goes through [`UserService::create`].

use std::sync::Arc;

use secrecy::SecretString;
use serde_json::Value;

use crate::audit::{AuditAction, AuditEvent};
use crate::capability::{Capabilities, Capability};
use crate::error::{AccessDenied, DomainError, RepositoryError, Unique};
use crate::password::check_policy;
use crate::ports::{
    CapabilityRepository, Clock, EntitlementsProvider, OnboardingRepository, PasswordHasher,
    PreferenceRepository, UserRepository,
};
use crate::service::context::RequestContext;
use crate::user::{
    check_preferences, Email, NewUser, OnboardingProgress, Page, User, UserId, UserPatch,
};

/// What a grant or revocation changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapabilityChange {
    /// The user holds (grant) or no longer holds (revoke) the capability now.
    Changed,
    /// The user already held (grant) or did not hold (revoke) it: nothing changed.
    Unchanged,
}

/// The user use cases, against the user, preference, onboarding and capability ports.
#[derive(Clone)]
pub struct UserService {
    pub(super) users: Arc<dyn UserRepository>,
    preferences: Arc<dyn PreferenceRepository>,
    onboarding: Arc<dyn OnboardingRepository>,
    capabilities: Arc<dyn CapabilityRepository>,
    entitlements: Arc<dyn EntitlementsProvider>,
    pub(super) passwords: Arc<dyn PasswordHasher>,
    pub(super) clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for UserService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserService").finish_non_exhaustive()
    }
}

/// The ports [`UserService::new`] needs.
#[allow(missing_debug_implementations)]
pub struct UserPorts {
    /// User profiles.
    pub users: Arc<dyn UserRepository>,
    /// Preferences.
    pub preferences: Arc<dyn PreferenceRepository>,
    /// Onboarding progress.
    pub onboarding: Arc<dyn OnboardingRepository>,
    /// Capability grants.
    pub capabilities: Arc<dyn CapabilityRepository>,
    /// Resolved capabilities (to check operators, and to forget a changed user).
    pub entitlements: Arc<dyn EntitlementsProvider>,
    /// Password hashing.
    pub passwords: Arc<dyn PasswordHasher>,
    /// Time.
    pub clock: Arc<dyn Clock>,
}

impl UserService {
    /// A service over `ports`.
    pub fn new(ports: UserPorts) -> Self {
        Self {
            users: ports.users,
            preferences: ports.preferences,
            onboarding: ports.onboarding,
            capabilities: ports.capabilities,
            entitlements: ports.entitlements,
            passwords: ports.passwords,
            clock: ports.clock,
        }
    }

    /// Creates a user, with a password when one is given (checked against the policy, then
    /// hashed). A taken e-mail is [`DomainError::Duplicate`].
    pub async fn create(
        &self,
        user: NewUser,
        password: Option<&SecretString>,
    ) -> Result<User, DomainError> {
        let hash = match password {
            Some(password) => {
                check_policy(password).map_err(DomainError::PasswordPolicy)?;
                Some(
                    self.passwords
                        .hash(password)
                        .await
                        .map_err(|e| DomainError::Internal(e.to_string()))?,
                )
            }
            None => None,
        };
        match self.users.create(&user, hash).await {
            Ok(created) => Ok(created),
            // The database names the first rule broken; a taken e-mail is what people act on.
            Err(RepositoryError::Duplicate(Unique::UserId))
                if self.users.find_by_email(&user.email).await?.is_some() =>
            {
                Err(DomainError::Duplicate(Unique::Email))
            }
            Err(other) => Err(other.into()),
        }
    }

    /// Creates a user and grants it `can.manage_users` (the command line's `--operator`).
    pub async fn create_operator(
        &self,
        user: NewUser,
        password: Option<&SecretString>,
    ) -> Result<User, DomainError> {
        let created = self.create(user, password).await?;
        self.capabilities
            .set(created.id, &Capability::manage_users(), true)
            .await?;
        Ok(created)
    }

    /// A user that exists and is not deleted.
    pub async fn get(&self, id: UserId) -> Result<User, DomainError> {
        self.users.get(id).await.map_err(user_error)
    }

    /// A user by e-mail address.
    pub async fn find_by_email(&self, email: &Email) -> Result<Option<User>, DomainError> {
        Ok(self.users.find_by_email(email).await?)
    }

    /// One page of users and their total count.
    pub async fn list(&self, page: Page) -> Result<(Vec<User>, u64), DomainError> {
        Ok(self.users.list(page).await?)
    }

    /// Applies a profile patch.
    pub async fn update(&self, id: UserId, patch: &UserPatch) -> Result<User, DomainError> {
        self.users.update(id, patch).await.map_err(user_error)
    }

    /// Soft-deletes a user and deletes its broker credentials with it (audited, one event per
    /// credential, in the same transaction); its cached capabilities are forgotten at once.
    pub async fn delete(&self, ctx: &RequestContext, id: UserId) -> Result<(), DomainError> {
        let event = AuditEvent {
            occurred_at: self.clock.now(),
            actor_id: ctx.actor,
            target_user_id: id,
            action: AuditAction::Delete,
            broker: None,
            outcome: "account_deleted".into(),
            key_id: None,
            request_id: ctx.request_id.clone(),
            actor_service: ctx.service.as_ref().map(ToString::to_string),
            detail: None,
        };
        self.users
            .soft_delete(id, &event)
            .await
            .map_err(user_error)?;
        self.entitlements.forget(id);
        Ok(())
    }

    /// Activates `target`: the user itself may, and so may an operator; anyone else gets
    /// [`AccessDenied::OperationNotPermitted`].
    pub async fn activate(&self, actor: UserId, target: UserId) -> Result<User, DomainError> {
        if actor != target {
            let held = self
                .entitlements
                .capabilities(actor)
                .await
                .map_err(|_| DomainError::DependencyUnavailable("entitlements"))?;
            if !held.holds(&Capability::manage_users()) {
                return Err(AccessDenied::OperationNotPermitted.into());
            }
        }
        let patch = UserPatch {
            is_active: Some(true),
            ..UserPatch::default()
        };
        self.update(target, &patch).await
    }

    /// Replaces the preferences of an existing user.
    pub async fn put_preferences(&self, id: UserId, value: Value) -> Result<Value, DomainError> {
        check_preferences(&value)?;
        self.get(id).await?;
        Ok(self.preferences.put(id, &value).await?)
    }

    /// The onboarding progress of an existing user.
    pub async fn onboarding(&self, id: UserId) -> Result<OnboardingProgress, DomainError> {
        self.get(id).await?;
        Ok(self
            .onboarding
            .get(id)
            .await?
            .unwrap_or_else(OnboardingProgress::start))
    }

    /// Marks an onboarding step completed; an unknown step is refused before anything is read.
    pub async fn complete_step(
        &self,
        id: UserId,
        step: &str,
    ) -> Result<OnboardingProgress, DomainError> {
        OnboardingProgress::start().complete(step)?;
        let mut progress = self.onboarding(id).await?;
        progress.complete(step)?;
        progress.updated_at = Some(self.clock.now());
        self.onboarding.save(id, &progress).await?;
        Ok(progress)
    }

    /// Starts the onboarding again.
    pub async fn reset_onboarding(&self, id: UserId) -> Result<OnboardingProgress, DomainError> {
        self.get(id).await?;
        let now = self.clock.now();
        let mut progress = OnboardingProgress::start();
        progress.restarted_at = Some(now);
        progress.updated_at = Some(now);
        self.onboarding.save(id, &progress).await?;
        Ok(progress)
    }

    /// The capabilities `id` holds now.
    pub async fn capabilities(&self, id: UserId) -> Result<Capabilities, DomainError> {
        self.entitlements
            .capabilities(id)
            .await
            .map_err(|_| DomainError::DependencyUnavailable("entitlements"))
    }

    /// Grants (`granted`) or revokes a capability, and says whether anything changed.
    pub async fn set_capability(
        &self,
        id: UserId,
        capability: &Capability,
        granted: bool,
    ) -> Result<CapabilityChange, DomainError> {
        self.get(id).await?;
        let held = self.capabilities(id).await?.holds(capability);
        if held == granted {
            return Ok(CapabilityChange::Unchanged);
        }
        self.capabilities.set(id, capability, granted).await?;
        self.entitlements.forget(id);
        Ok(CapabilityChange::Changed)
    }
}

/// A missing row of the users table is a missing user.
fn user_error(error: RepositoryError) -> DomainError {
    match error {
        RepositoryError::NotFound => DomainError::NotFound("User"),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::ports::{
        MockCapabilityRepository, MockClock, MockEntitlementsProvider, MockOnboardingRepository,
        MockPasswordHasher, MockPreferenceRepository, MockUserRepository,
    };

    struct Mocks {
        users: MockUserRepository,
        preferences: MockPreferenceRepository,
        onboarding: MockOnboardingRepository,
        capabilities: MockCapabilityRepository,
        entitlements: MockEntitlementsProvider,
        passwords: MockPasswordHasher,
    }

    impl Mocks {
        fn new() -> Self {
            Self {
                users: MockUserRepository::new(),
                preferences: MockPreferenceRepository::new(),
                onboarding: MockOnboardingRepository::new(),
                capabilities: MockCapabilityRepository::new(),
                entitlements: MockEntitlementsProvider::new(),
                passwords: MockPasswordHasher::new(),
            }
        }

        fn service(self) -> UserService {
            let mut clock = MockClock::new();
            clock
                .expect_now()
                .returning(|| Utc.with_ymd_and_hms(2026, 12, 1, 8, 0, 0).unwrap());
            UserService::new(UserPorts {
                users: Arc::new(self.users),
                preferences: Arc::new(self.preferences),
                onboarding: Arc::new(self.onboarding),
                capabilities: Arc::new(self.capabilities),
                entitlements: Arc::new(self.entitlements),
                passwords: Arc::new(self.passwords),
                clock: Arc::new(clock),
            })
        }
    }

    fn user(id: i64) -> User {
        let at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        User {
            id: UserId(id),
            email: Email::parse("ann@example.com").unwrap(),
            first_name: None,
            last_name: None,
            phone: None,
            marketing_opt_in: false,
            is_active: false,
            is_superuser: false,
            created_at: at,
            updated_at: at,
        }
    }

    fn new_user() -> NewUser {
        NewUser::with_email(Email::parse("ann@example.com").unwrap())
    }

    #[tokio::test]
    async fn a_weak_password_is_refused_before_anything_is_hashed_or_stored() {
        let mut mocks = Mocks::new();
        mocks.passwords.expect_hash().never();
        mocks.users.expect_create().never();
        let error = mocks
            .service()
            .create(new_user(), Some(&SecretString::from("short")))
            .await
            .unwrap_err();
        assert!(matches!(error, DomainError::PasswordPolicy(_)), "{error:?}");
    }

    #[tokio::test]
    async fn a_password_is_stored_hashed() {
        let mut mocks = Mocks::new();
        mocks
            .passwords
            .expect_hash()
            .times(1)
            .returning(|_| Ok(SecretString::from("$argon2id$hash")));
        mocks
            .users
            .expect_create()
            .withf(|_, hash| {
                use secrecy::ExposeSecret;
                hash.as_ref().map(|h| h.expose_secret()) == Some("$argon2id$hash")
            })
            .times(1)
            .returning(|_, _| Ok(user(7)));
        let created = mocks
            .service()
            .create(new_user(), Some(&SecretString::from("Correct-Horse-9")))
            .await
            .unwrap();
        assert_eq!(created.id, UserId(7));
    }

    #[tokio::test]
    async fn a_taken_email_is_a_duplicate_not_a_lost_race() {
        let mut mocks = Mocks::new();
        mocks
            .users
            .expect_create()
            .returning(|_, _| Err(RepositoryError::Duplicate(Unique::Email)));
        let error = mocks.service().create(new_user(), None).await.unwrap_err();
        assert_eq!(error, DomainError::Duplicate(Unique::Email));
    }

    #[tokio::test]
    async fn only_the_user_itself_or_an_operator_activates() {
        let mut mocks = Mocks::new();
        mocks
            .entitlements
            .expect_capabilities()
            .returning(|_| Ok(Capabilities::none()));
        mocks.users.expect_update().never();
        let error = mocks
            .service()
            .activate(UserId(2), UserId(3))
            .await
            .unwrap_err();
        assert_eq!(
            error,
            DomainError::AccessDenied(AccessDenied::OperationNotPermitted)
        );

        let mut mocks = Mocks::new();
        mocks.entitlements.expect_capabilities().never();
        mocks
            .users
            .expect_update()
            .withf(|id, patch| *id == UserId(3) && patch.is_active == Some(true))
            .times(1)
            .returning(|id, _| Ok(user(id.0)));
        mocks
            .service()
            .activate(UserId(3), UserId(3))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn completing_a_step_stamps_the_clock_time() {
        let mut mocks = Mocks::new();
        mocks.users.expect_get().returning(|id| Ok(user(id.0)));
        mocks.onboarding.expect_get().returning(|_| Ok(None));
        mocks
            .onboarding
            .expect_save()
            .withf(|_, progress| {
                progress.updated_at == Some(Utc.with_ymd_and_hms(2026, 12, 1, 8, 0, 0).unwrap())
                    && progress.completed_steps == ["api-keys"]
            })
            .times(1)
            .returning(|_, _| Ok(()));
        mocks
            .service()
            .complete_step(UserId(1), "api-keys")
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn an_unknown_step_is_refused_without_reading() {
        let mut mocks = Mocks::new();
        mocks.users.expect_get().never();
        let error = mocks
            .service()
            .complete_step(UserId(1), "fly")
            .await
            .unwrap_err();
        assert!(matches!(error, DomainError::Validation(_)), "{error:?}");
    }

    #[tokio::test]
    async fn deleting_forgets_the_cached_capabilities() {
        let mut mocks = Mocks::new();
        mocks
            .users
            .expect_soft_delete()
            .withf(|id, event| {
                *id == UserId(4)
                    && event.action == AuditAction::Delete
                    && event.outcome == "account_deleted"
                    && event.actor_id == Some(UserId(9))
            })
            .returning(|_, _| Ok(2));
        mocks
            .entitlements
            .expect_forget()
            .withf(|id| *id == UserId(4))
            .times(1)
            .return_const(());
        mocks
            .service()
            .delete(&RequestContext::new(UserId(9), "r"), UserId(4))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_missing_user_is_reported_as_such() {
        let mut mocks = Mocks::new();
        mocks
            .users
            .expect_get()
            .returning(|_| Err(RepositoryError::NotFound));
        let error = mocks.service().get(UserId(9)).await.unwrap_err();
        assert_eq!(error, DomainError::NotFound("User"));
    }

    #[tokio::test]
    async fn granting_what_is_held_changes_nothing() {
        let mut mocks = Mocks::new();
        mocks.users.expect_get().returning(|id| Ok(user(id.0)));
        mocks
            .entitlements
            .expect_capabilities()
            .returning(|_| Ok(std::iter::once(Capability::use_users()).collect()));
        mocks.capabilities.expect_set().never();
        let change = mocks
            .service()
            .set_capability(UserId(1), &Capability::use_users(), true)
            .await
            .unwrap();
        assert_eq!(change, CapabilityChange::Unchanged);
    }
}
