//! Rate limits, documented in `docs/security.md`.
//!
//! The routes that call out of the platform are limited in process ([`RequestLimits`]): the
//! connection test must not become a key-checking oracle, nor burn the platform's per-address
//! quota at the brokers. Counted per replica (the ingress in front of several replicas limits
//! too).
//!
//! Sign-in is limited in the database ([`SignInLimits`]), so that every replica counts the same
//! attempts.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};
use user_service_domain::ports::Clock as TimeSource;
use user_service_domain::ports::ThrottleRepository;
use user_service_domain::{DomainError, ServiceName, UserId};

use crate::http::error::ApiError;
use crate::http::metrics::Metrics;

/// Sign-in attempts (register or login) allowed per e-mail address from one client address and
/// minute: what stops a guesser without locking the account's owner out from elsewhere.
pub const ATTEMPTS_PER_ACCOUNT_AND_ADDRESS_PER_MINUTE: u32 = 5;
/// Sign-in attempts allowed per client address and minute, whatever the accounts.
pub const ATTEMPTS_PER_ADDRESS_PER_MINUTE: u32 = 20;
/// Sign-in attempts allowed per e-mail address and minute from all addresses together: a
/// ceiling against guessing from many addresses, loose enough that one address (at most
/// [`ATTEMPTS_PER_ADDRESS_PER_MINUTE`]) cannot reach it and lock the owner out.
pub const ATTEMPTS_PER_ACCOUNT_PER_MINUTE: u32 = 100;

/// A per-user and a global limit on one kind of request.
pub struct RequestLimits {
    name: &'static str,
    per_user: DefaultKeyedRateLimiter<UserId>,
    global: DefaultDirectRateLimiter,
}

impl std::fmt::Debug for RequestLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestLimits")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN))
}

/// Whole seconds to wait, rounded up, at least one.
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

impl RequestLimits {
    /// `per_user` requests a minute for each user (in bursts of that size) and `global` for all
    /// users together; `name` labels the refusals in `/metrics`.
    pub fn new(name: &'static str, per_user: u32, global: u32) -> Self {
        Self {
            name,
            per_user: DefaultKeyedRateLimiter::keyed(per_minute(per_user)),
            global: DefaultDirectRateLimiter::direct(per_minute(global)),
        }
    }

    /// Counts one request of `user`: `429` with `Retry-After` when over either limit.
    pub fn check(&self, user: UserId, metrics: &Metrics) -> Result<(), ApiError> {
        self.per_user.check_key(&user).map_err(|not_until| {
            refused(self.name, &not_until, metrics, &format!("for user {user}"))
        })?;
        self.global
            .check()
            .map_err(|not_until| refused(self.name, &not_until, metrics, "(global)"))?;
        forget_idle(&self.per_user);
        Ok(())
    }
}

/// A request over the in-process limit `limit`: counted in `/metrics`, logged with `whose` (ids,
/// never a value), answered `429` with `Retry-After`.
fn refused(
    limit: &'static str,
    not_until: &governor::NotUntil<<DefaultClock as Clock>::Instant>,
    metrics: &Metrics,
    whose: &str,
) -> ApiError {
    metrics.refused(limit);
    log::warn!("{limit} rate limit reached {whose}");
    ApiError::too_many_requests(retry_after_secs(
        not_until.wait_time_from(DefaultClock::default().now()),
    ))
}

/// Keeps a keyed limiter's memory bounded: past 100,000 keys, those idle long enough to be full
/// again are dropped.
fn forget_idle<K: std::hash::Hash + Eq + Clone>(limiter: &DefaultKeyedRateLimiter<K>) {
    if limiter.len() > 100_000 {
        limiter.retain_recent();
    }
}

/// Limits of the signing route: per trader whose key signs, and per platform service asking.
/// Counted per replica, like [`RequestLimits`].
pub struct SigningLimits {
    per_user: DefaultKeyedRateLimiter<UserId>,
    per_service: DefaultKeyedRateLimiter<ServiceName>,
}

impl std::fmt::Debug for SigningLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningLimits").finish_non_exhaustive()
    }
}

impl SigningLimits {
    /// `per_user` signatures a minute with each trader's keys, `per_service` for each service.
    pub fn new(per_user: u32, per_service: u32) -> Self {
        Self {
            per_user: DefaultKeyedRateLimiter::keyed(per_minute(per_user)),
            per_service: DefaultKeyedRateLimiter::keyed(per_minute(per_service)),
        }
    }

    /// Counts one signature asked by `service` with `user`'s keys: `429` with `Retry-After`
    /// when over either limit.
    pub fn check(
        &self,
        service: &ServiceName,
        user: UserId,
        metrics: &Metrics,
    ) -> Result<(), ApiError> {
        let whose = || format!("for service {service} and user {user}");
        self.per_service
            .check_key(service)
            .map_err(|not_until| refused("signing_per_service", &not_until, metrics, &whose()))?;
        self.per_user
            .check_key(&user)
            .map_err(|not_until| refused("signing_per_user", &not_until, metrics, &whose()))?;
        forget_idle(&self.per_user);
        Ok(())
    }
}

/// Sign-in rate limits, GCRA buckets keyed three ways: per (e-mail, client address), the tight
/// one; per client address; and per e-mail from every address, a ceiling set above what one
/// address may send. Failed attempts from one address therefore never lock the account's owner
/// out when signing in from another. The buckets are rows of the database
/// ([`ThrottleRepository`]), so every replica counts the same attempts; a bucket's key is a
/// SHA-256 of its kind and key, never an e-mail address in clear.
pub struct SignInLimits {
    store: Arc<dyn ThrottleRepository>,
    clock: Arc<dyn TimeSource>,
    per_pair: u32,
    per_address: u32,
    per_account: u32,
}

impl std::fmt::Debug for SignInLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignInLimits")
            .field("per_pair", &self.per_pair)
            .field("per_address", &self.per_address)
            .field("per_account", &self.per_account)
            .finish_non_exhaustive()
    }
}

impl SignInLimits {
    /// Limits allowing `per_pair` attempts per minute per e-mail from one client address,
    /// `per_address` per client address and `per_account` per e-mail from all addresses
    /// (bursts of that size, then one attempt per `60 / n` seconds), kept in `store`, timed by
    /// `clock`.
    pub fn new(
        store: Arc<dyn ThrottleRepository>,
        clock: Arc<dyn TimeSource>,
        per_pair: u32,
        per_address: u32,
        per_account: u32,
    ) -> Self {
        Self {
            store,
            clock,
            per_pair,
            per_address,
            per_account,
        }
    }

    /// The limits of the sign-in routes, in `store`, timed by `clock`.
    pub fn standard(store: Arc<dyn ThrottleRepository>, clock: Arc<dyn TimeSource>) -> Self {
        Self::new(
            store,
            clock,
            ATTEMPTS_PER_ACCOUNT_AND_ADDRESS_PER_MINUTE,
            ATTEMPTS_PER_ADDRESS_PER_MINUTE,
            ATTEMPTS_PER_ACCOUNT_PER_MINUTE,
        )
    }

    /// Counts one attempt for `account` from `address`; `429` with `Retry-After` when any of
    /// the three buckets is over its limit (the buckets checked before it keep the attempt).
    pub async fn check(&self, account: &str, address: Option<IpAddr>) -> Result<(), ApiError> {
        let now = self.clock.now();
        let shown = address.map(|a| a.to_string()).unwrap_or_default();
        if address.is_some() {
            self.admit(&bucket("address", &[&shown]), self.per_address, now, || {
                format!("sign-in rate limit reached for address {shown}")
            })
            .await?;
        }
        self.admit(
            &bucket("pair", &[account, &shown]),
            self.per_pair,
            now,
            || "sign-in rate limit reached for one account from one address".to_owned(),
        )
        .await?;
        self.admit(
            &bucket("account", &[account]),
            self.per_account,
            now,
            || "sign-in ceiling reached for one account".to_owned(),
        )
        .await
    }

    /// Counts one attempt in `bucket`; over the limit, logs `why` (never an e-mail address) and
    /// answers `429` with `Retry-After`.
    async fn admit(
        &self,
        bucket: &str,
        per_minute: u32,
        now: chrono::DateTime<chrono::Utc>,
        why: impl FnOnce() -> String,
    ) -> Result<(), ApiError> {
        match self.store.admit(bucket, per_minute, now).await {
            Ok(None) => Ok(()),
            Ok(Some(wait)) => {
                log::warn!(target: "signin", "{}", why());
                Err(ApiError::too_many_requests(retry_after_secs(wait)))
            }
            Err(error) => Err(DomainError::from(error).into()),
        }
    }
}

/// The row key of a bucket: SHA-256 (hex) of its kind and parts, NUL-separated.
fn bucket(kind: &str, parts: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    hash.update(kind.as_bytes());
    for part in parts {
        hash.update([0]);
        hash.update(part.as_bytes());
    }
    hash.finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use actix_web::http::{header, StatusCode};
    use actix_web::ResponseError;

    use super::*;

    const HOME: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));

    /// A clock the test moves by hand.
    struct StepClock(std::sync::Mutex<chrono::DateTime<chrono::Utc>>);

    impl StepClock {
        fn advance(&self, by: Duration) {
            let mut now = self.0.lock().unwrap();
            *now += chrono::Duration::from_std(by).unwrap();
        }
    }

    impl TimeSource for StepClock {
        fn now(&self) -> chrono::DateTime<chrono::Utc> {
            *self.0.lock().unwrap()
        }
    }

    /// Limits over a fresh, migrated SQLite database (kept alive by the returned folder).
    async fn limits(
        per_pair: u32,
        per_address: u32,
        per_account: u32,
    ) -> (SignInLimits, tempfile::TempDir) {
        let clock = Arc::new(StepClock(std::sync::Mutex::new(chrono::Utc::now())));
        limits_timed(per_pair, per_address, per_account, clock).await
    }

    /// The same, timed by `clock`.
    async fn limits_timed(
        per_pair: u32,
        per_address: u32,
        per_account: u32,
        clock: Arc<StepClock>,
    ) -> (SignInLimits, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("throttle.db").display());
        let database = user_service_persistence::Database::connect(&url, &Default::default())
            .await
            .unwrap();
        database.run_migrations().await.unwrap();
        let store = Arc::new(database.throttle());
        (
            SignInLimits::new(store, clock, per_pair, per_address, per_account),
            dir,
        )
    }

    #[actix_web::test]
    async fn the_sixth_attempt_on_one_account_is_refused_with_retry_after() {
        let (limits, _db) = limits(5, 100, 100).await;
        for _ in 0..5 {
            limits.check("a@example.com", HOME).await.unwrap();
        }
        let refused = limits.check("a@example.com", HOME).await.unwrap_err();
        assert_eq!(refused.status_code(), StatusCode::TOO_MANY_REQUESTS);
        let response = refused.error_response();
        let retry: u64 = response
            .headers()
            .get(header::RETRY_AFTER)
            .unwrap()
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            (1..=12).contains(&retry),
            "one attempt comes back every 12 s, got {retry}"
        );
        // Another account from the same address is not affected.
        limits.check("b@example.com", HOME).await.unwrap();
    }

    #[actix_web::test]
    async fn a_refused_account_gets_one_attempt_back_per_interval_by_the_clock() {
        let clock = Arc::new(StepClock(std::sync::Mutex::new(chrono::Utc::now())));
        let (limits, _db) = limits_timed(5, 100, 100, Arc::clone(&clock)).await;
        for _ in 0..5 {
            limits.check("a@example.com", HOME).await.unwrap();
        }
        limits.check("a@example.com", HOME).await.unwrap_err();
        // 5 a minute: one attempt comes back every 12 s, not before.
        clock.advance(Duration::from_secs(11));
        limits.check("a@example.com", HOME).await.unwrap_err();
        clock.advance(Duration::from_secs(1));
        limits.check("a@example.com", HOME).await.unwrap();
        limits.check("a@example.com", HOME).await.unwrap_err();
        // A minute later the whole burst is back.
        clock.advance(Duration::from_secs(60));
        for _ in 0..5 {
            limits.check("a@example.com", HOME).await.unwrap();
        }
    }

    #[actix_web::test]
    async fn one_address_is_limited_across_accounts() {
        let (limits, _db) = limits(5, 20, 100).await;
        for n in 0..20 {
            limits
                .check(&format!("user{n}@example.com"), HOME)
                .await
                .unwrap();
        }
        let refused = limits.check("fresh@example.com", HOME).await.unwrap_err();
        assert_eq!(refused.status_code(), StatusCode::TOO_MANY_REQUESTS);
        let elsewhere = Some("192.0.2.7".parse().unwrap());
        limits.check("fresh@example.com", elsewhere).await.unwrap();
    }

    #[actix_web::test]
    async fn failures_from_one_address_do_not_lock_the_owner_out_from_another() {
        let (limits, _db) = limits(5, 20, 100).await;
        let attacker = Some("198.51.100.9".parse().unwrap());
        for _ in 0..5 {
            limits.check("victim@example.com", attacker).await.unwrap();
        }
        let refused = limits
            .check("victim@example.com", attacker)
            .await
            .unwrap_err();
        assert_eq!(refused.status_code(), StatusCode::TOO_MANY_REQUESTS);
        // The owner, from home, is not affected.
        limits.check("victim@example.com", HOME).await.unwrap();
    }

    #[actix_web::test]
    async fn many_addresses_together_meet_the_account_ceiling() {
        let (limits, _db) = limits(5, 20, 12).await;
        for n in 0..12u8 {
            let address = Some(IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, n)));
            limits.check("victim@example.com", address).await.unwrap();
        }
        let fresh = Some(IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 200)));
        let refused = limits.check("victim@example.com", fresh).await.unwrap_err();
        assert_eq!(refused.status_code(), StatusCode::TOO_MANY_REQUESTS);
        limits
            .check("someone-else@example.com", fresh)
            .await
            .unwrap();
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::from_millis(0)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(11_001)), 12);
        assert_eq!(retry_after_secs(Duration::from_secs(3)), 3);
    }

    #[actix_web::test]
    async fn sign_in_limits_do_not_show_an_account_in_debug() {
        let (limits, _db) = limits(5, 20, 100).await;
        limits.check("someone@example.com", HOME).await.unwrap();
        let shown = format!("{limits:?}");
        assert!(!shown.contains("someone"), "{shown}");
    }

    #[test]
    fn one_user_is_limited_before_the_others_and_all_together_after() {
        let limits = RequestLimits::new("connection_test", 2, 3);
        let metrics = Metrics::default();
        limits.check(UserId(1), &metrics).unwrap();
        limits.check(UserId(1), &metrics).unwrap();
        let refused = limits.check(UserId(1), &metrics).unwrap_err();
        assert_eq!(refused.status_code().as_u16(), 429);
        assert!(refused
            .error_response()
            .headers()
            .contains_key("retry-after"));
        limits.check(UserId(2), &metrics).unwrap();
        // Three accepted in all: the global limit refuses a fourth user.
        assert!(limits.check(UserId(3), &metrics).is_err());
        assert!(metrics
            .render("")
            .contains("rate_limited_total{limit=\"connection_test\"} 2"));
    }
}
