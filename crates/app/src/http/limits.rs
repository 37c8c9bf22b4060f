//! In-process rate limits of the routes that call out of the platform: the connection test must
//! not become a key-checking oracle, nor burn the platform's per-address quota at the brokers.
//!
//! Counted per replica (the ingress in front of several replicas limits too); documented in
//! `docs/security.md`.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};
use user_service_domain::UserId;

use crate::http::error::ApiError;
use crate::http::metrics::Metrics;

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
        let clock = DefaultClock::default();
        if let Err(not_until) = self.per_user.check_key(&user) {
            metrics.refused(self.name);
            log::warn!("{} rate limit reached for user {user}", self.name);
            return Err(ApiError::too_many_requests(retry_after_secs(
                not_until.wait_time_from(clock.now()),
            )));
        }
        if let Err(not_until) = self.global.check() {
            metrics.refused(self.name);
            log::warn!("{} global rate limit reached", self.name);
            return Err(ApiError::too_many_requests(retry_after_secs(
                not_until.wait_time_from(clock.now()),
            )));
        }
        if self.per_user.len() > 100_000 {
            self.per_user.retain_recent();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use actix_web::ResponseError;

    use super::*;

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
