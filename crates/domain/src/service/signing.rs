//! Signing a broker request with a stored key for a platform service (docs/signing.md): the
//! secret is used here and never leaves the service.

use log::warn;

use crate::audit::AuditAction;
use crate::broker::BrokerId;
use crate::capability::Capability;
use crate::credential::{KeyId, StoredCredential};
use crate::cutover::BindingCheck;
use crate::error::{AccessDenied, CipherError, DomainError};
use crate::ports::{CredentialCipher, EntitlementsProvider};
use crate::secret::PlainSecret;
use crate::service::context::RequestContext;
use crate::service::credentials::CredentialService;
use crate::signing::{RequestSigner, SignError, SignedRequest, UnsignedRequest};
use crate::user::UserId;

/// What a platform service asks to have signed: whose key, for which broker, which request.
#[derive(Debug, Clone)]
pub struct SignOrder {
    /// The trader whose stored key signs.
    pub target: UserId,
    /// The broker the request goes to.
    pub broker: BrokerId,
    /// The request as the service will send it.
    pub request: UnsignedRequest,
}

/// The ports a signature needs besides the service's own.
#[derive(Clone, Copy)]
pub struct Signing<'a> {
    /// The key ring of the moment.
    pub cipher: &'a dyn CredentialCipher,
    /// The broker protocols.
    pub signer: &'a dyn RequestSigner,
    /// Where the trader's capabilities come from.
    pub entitlements: &'a dyn EntitlementsProvider,
}

impl std::fmt::Debug for Signing<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signing").finish_non_exhaustive()
    }
}

impl CredentialService {
    /// Signs `order` with the stored key of its target, for the platform service of `ctx`
    /// (already authorized by `SIGNING_SERVICES`).
    ///
    /// Checked in order: the broker has a signer ([`SignError::Unsupported`]), the trader holds
    /// `can.route_orders`, a credential is stored (404), its owner allowed trading
    /// ([`SignError::TradingNotEnabled`]), it is bound, whole and decryptable
    /// ([`SignError::UnusableCredential`]), and the signer's policy admits the request. Every
    /// outcome from the credential's lookup on is audited with the method and path only.
    pub async fn sign(
        &self,
        ports: Signing<'_>,
        ctx: &RequestContext,
        order: SignOrder,
    ) -> Result<SignedRequest, DomainError> {
        if !ports.signer.can_sign(&order.broker) {
            return Err(SignError::Unsupported.into());
        }
        let held = ports
            .entitlements
            .capabilities(order.target)
            .await
            .map_err(|_| DomainError::DependencyUnavailable("entitlements"))?;
        if !held.holds(&Capability::route_orders()) {
            return Err(
                AccessDenied::MissingCapability(Capability::ROUTE_ORDERS.to_owned()).into(),
            );
        }
        let rows = self.credentials.list(order.target).await?;
        let Some(row) = rows.iter().find(|row| row.broker == order.broker) else {
            return Err(DomainError::NotFound("Broker credential"));
        };
        let outcome = self.sign_row(ports, row, &order.request);
        let detail = format!("{} {}", order.request.method(), order.request.path());
        let mut event = self.event(
            ctx,
            order.target,
            AuditAction::Sign,
            Some(&order.broker),
            match &outcome {
                Ok(_) => "success",
                Err(error) => refusal_outcome(error),
            },
            row.key_id.clone(),
        );
        event.detail = Some(detail);
        self.record(event).await;
        outcome
    }

    fn sign_row(
        &self,
        ports: Signing<'_>,
        row: &StoredCredential,
        request: &UnsignedRequest,
    ) -> Result<SignedRequest, DomainError> {
        if !row.trading_enabled {
            return Err(SignError::TradingNotEnabled.into());
        }
        // Only a row this service bound is used: never an unbound row of the Python service,
        // whatever the cut-over mode, and never one whose tag fails.
        if ports.cipher.verify_binding(row) != BindingCheck::Bound {
            warn!(
                "broker credential row {} (key id {}) failed its binding check when asked to sign",
                row.id,
                row.key_id.as_ref().map_or("none", KeyId::as_str)
            );
            return Err(SignError::UnusableCredential(
                "The stored credential fails its integrity check; the owner must store it again",
            )
            .into());
        }
        let open = |token: Option<&String>| -> Result<PlainSecret, DomainError> {
            let token = token.ok_or(SignError::UnusableCredential(
                "Both an API key and an API secret must be stored to sign",
            ))?;
            match ports.cipher.decrypt(token) {
                Ok(opened) => Ok(opened.value),
                Err(CipherError::Undecryptable | CipherError::NotUtf8) => {
                    Err(SignError::UnusableCredential(
                        "The stored credential cannot be decrypted; the owner must store it again",
                    )
                    .into())
                }
                Err(other) => Err(other.into()),
            }
        };
        let api_key = open(row.api_key_encrypted.as_ref())?;
        let api_secret = open(row.api_secret_encrypted.as_ref())?;
        Ok(ports.signer.sign(
            &row.broker,
            request,
            &api_key,
            &api_secret,
            self.clock.now(),
        )?)
    }
}

/// The audit outcome of a refused signature: the reason's stable name, never a value.
fn refusal_outcome(error: &DomainError) -> &'static str {
    match error {
        DomainError::Signing(SignError::TradingNotEnabled) => "trading_not_enabled",
        DomainError::Signing(SignError::UnusableCredential(_) | SignError::InvalidSecret) => {
            "credential_unusable"
        }
        DomainError::Signing(SignError::PathNotAllowed) => "path_refused",
        DomainError::Signing(SignError::InvalidRequest(_)) => "invalid_request",
        DomainError::KeyNotConfigured => "key_unavailable",
        _ => "failure",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::{Arc, Mutex};

    use chrono::{TimeZone, Utc};
    use secrecy::ExposeSecret;

    use super::*;
    use crate::capability::Capabilities;
    use crate::ports::{
        MockAuditRepository, MockClock, MockCredentialRepository, MockEntitlementsProvider, Opened,
        Sealed,
    };
    use crate::principal::ServiceName;
    use crate::signing::{HttpMethod, MockRequestSigner};
    use crate::test_support::stored_row;
    use crate::AuditEvent;

    /// A cipher whose tokens are `enc:` + plaintext and whose bound rows carry the tag `tag`.
    struct PlainCipher;

    impl CredentialCipher for PlainCipher {
        fn primary_key_id(&self) -> KeyId {
            KeyId::new("primary")
        }
        fn key_ids(&self) -> Vec<KeyId> {
            vec![self.primary_key_id()]
        }
        fn encrypt(&self, plaintext: &PlainSecret) -> Result<Sealed, CipherError> {
            Ok(Sealed {
                token: format!("enc:{}", plaintext.expose_secret()),
                key_id: self.primary_key_id(),
            })
        }
        fn decrypt(&self, token: &str) -> Result<Opened, CipherError> {
            token
                .strip_prefix("enc:")
                .map(|value| Opened {
                    value: PlainSecret::new(value),
                    key_id: self.primary_key_id(),
                })
                .ok_or(CipherError::Undecryptable)
        }
        fn bind(&self, _: &crate::credential::BindingInput<'_>) -> String {
            "tag".into()
        }
        fn verify_binding(&self, row: &StoredCredential) -> BindingCheck {
            match row.binding.as_deref() {
                Some("tag") => BindingCheck::Bound,
                Some(_) => BindingCheck::Mismatch,
                None => BindingCheck::Unbound,
            }
        }
    }

    fn consenting_row() -> StoredCredential {
        let mut row = stored_row("binance", true, true, 3);
        row.api_key_encrypted = Some("enc:the-key".into());
        row.api_secret_encrypted = Some("enc:the-secret".into());
        row.trading_enabled = true;
        row
    }

    fn entitled(codes: &'static [&'static str]) -> MockEntitlementsProvider {
        let mut entitlements = MockEntitlementsProvider::new();
        entitlements.expect_capabilities().returning(move |_| {
            Ok(codes
                .iter()
                .filter_map(|c| Capability::parse(c))
                .collect::<Capabilities>())
        });
        entitlements
    }

    fn signer() -> MockRequestSigner {
        let mut signer = MockRequestSigner::new();
        signer
            .expect_can_sign()
            .returning(|broker| broker.as_str() != "alpaca");
        signer.expect_sign().returning(|_, _, key, secret, _| {
            // Shows that the decrypted halves reach the signer, and only it.
            assert_eq!(
                (key.expose_secret(), secret.expose_secret()),
                ("the-key", "the-secret")
            );
            Ok(SignedRequest {
                headers: vec![("X-MBX-APIKEY".into(), "the-key".into())],
                query: "timestamp=1&signature=abc".into(),
                body: String::new(),
            })
        });
        signer
    }

    struct Run {
        result: Result<SignedRequest, DomainError>,
        events: Vec<AuditEvent>,
    }

    async fn run(
        row: Option<StoredCredential>,
        broker: &str,
        capabilities: &'static [&'static str],
    ) -> Run {
        let mut repo = MockCredentialRepository::new();
        repo.expect_list()
            .returning(move |_| Ok(row.clone().into_iter().collect()));
        let events = Arc::new(Mutex::new(Vec::new()));
        let mut audit = MockAuditRepository::new();
        let seen = Arc::clone(&events);
        audit.expect_record().returning(move |event| {
            seen.lock().unwrap().push(event.clone());
            Ok(())
        });
        let mut clock = MockClock::new();
        clock
            .expect_now()
            .returning(|| Utc.with_ymd_and_hms(2026, 12, 4, 8, 0, 0).unwrap());
        let clock = Arc::new(clock);
        let service = CredentialService::new(Arc::new(repo), Arc::new(audit), clock);
        let ctx = RequestContext::for_service(ServiceName::parse("order-router").unwrap(), "r-1");
        let order = SignOrder {
            target: UserId(1),
            broker: BrokerId::parse(broker).unwrap(),
            request: UnsignedRequest::parse(
                HttpMethod::Post,
                "/api/v3/order",
                Some("symbol=BTCUSDT"),
                None,
            )
            .unwrap(),
        };
        let signer = signer();
        let entitlements = entitled(capabilities);
        let ports = Signing {
            cipher: &PlainCipher,
            signer: &signer,
            entitlements: &entitlements,
        };
        let result = service.sign(ports, &ctx, order).await;
        let events = events.lock().unwrap().clone();
        Run { result, events }
    }

    const ROUTE: &[&str] = &["can.use_users", "can.route_orders"];

    #[tokio::test]
    async fn a_consenting_entitled_owner_gets_a_signature_and_an_audit_record() {
        let run = run(Some(consenting_row()), "binance", ROUTE).await;
        let signed = run.result.unwrap();
        assert_eq!(signed.query, "timestamp=1&signature=abc");
        let [event] = &run.events[..] else {
            panic!("{:?}", run.events)
        };
        assert_eq!(event.action, AuditAction::Sign);
        assert_eq!(event.outcome, "success");
        assert_eq!(event.actor_id, None);
        assert_eq!(event.actor_service.as_deref(), Some("order-router"));
        assert_eq!(event.detail.as_deref(), Some("POST /api/v3/order"));
        assert!(!format!("{event:?}").contains("BTCUSDT"));
    }

    #[tokio::test]
    async fn refusals_come_in_order_and_are_audited_once_a_credential_is_found() {
        let run_of = |row, broker, caps| async move { run(row, broker, caps).await };
        let unsupported = run_of(Some(consenting_row()), "alpaca", ROUTE).await;
        assert_eq!(
            unsupported.result.unwrap_err(),
            DomainError::Signing(SignError::Unsupported)
        );
        assert!(unsupported.events.is_empty());

        let no_capability = run_of(Some(consenting_row()), "binance", &["can.use_users"]).await;
        assert_eq!(
            no_capability.result.unwrap_err(),
            DomainError::AccessDenied(AccessDenied::MissingCapability("can.route_orders".into()))
        );

        let missing = run_of(None, "binance", ROUTE).await;
        assert_eq!(
            missing.result.unwrap_err(),
            DomainError::NotFound("Broker credential")
        );

        let mut off = consenting_row();
        off.trading_enabled = false;
        let off = run_of(Some(off), "binance", ROUTE).await;
        assert_eq!(
            off.result.unwrap_err(),
            DomainError::Signing(SignError::TradingNotEnabled)
        );
        assert_eq!(off.events[0].outcome, "trading_not_enabled");

        let mut moved = consenting_row();
        moved.binding = Some("someone-else's-tag".into());
        let moved = run_of(Some(moved), "binance", ROUTE).await;
        assert!(matches!(
            moved.result.unwrap_err(),
            DomainError::Signing(SignError::UnusableCredential(_))
        ));
        assert_eq!(moved.events[0].outcome, "credential_unusable");

        let mut unbound = consenting_row();
        unbound.binding = None;
        assert!(matches!(
            run_of(Some(unbound), "binance", ROUTE).await.result,
            Err(DomainError::Signing(SignError::UnusableCredential(_)))
        ));

        let mut half = consenting_row();
        half.api_secret_encrypted = None;
        assert!(matches!(
            run_of(Some(half), "binance", ROUTE).await.result,
            Err(DomainError::Signing(SignError::UnusableCredential(_)))
        ));
    }
}
