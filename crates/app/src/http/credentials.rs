//! Broker credential routes: translate HTTP to the domain's credential service and back.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use secrecy::ExposeSecret;
use secrecy::SecretString;
use serde::{Deserialize, Deserializer, Serialize};
use user_service_domain::limits::SECRET_MAX_CHARS;
use user_service_domain::ports::ProbeStatus;
use user_service_domain::{
    BrokerId, CredentialStatus, CredentialTest, CredentialUpdate, PlainSecret, SecretInput, UserId,
    ValidationError,
};

use crate::http::error::{ApiError, ErrorBody, FieldError};
use crate::http::middleware::Caller;
use crate::state::AppState;

/// `{"credentials": [...]}`, the answer of every list and update.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CredentialList {
    /// The credentials, ordered by broker.
    pub credentials: Vec<CredentialStatus>,
}

/// Body of `PUT /users/me/broker-credentials`. Unknown fields (a `user_id`, say) are ignored:
/// the account is always the one the path and the token name.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct UpdateBody {
    /// At most 64 entries.
    #[schema(max_items = 64)]
    credentials: Vec<EntryBody>,
}

/// One entry: a field absent keeps, `null` / blank clears, a string sets.
/// `Debug` shows secrets as `[REDACTED]`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct EntryBody {
    /// Broker id: letters, digits, `-`, `_` and `.`, 1–64 characters; trimmed and lower-cased.
    #[schema(pattern = r"^\s*[A-Za-z0-9._-]{1,64}\s*$", example = "binance")]
    broker: String,
    /// Absent: keep; `null`, empty or blank: clear; otherwise stored as sent (≤ 4096 characters).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 4096)]
    api_key: Option<Option<SecretString>>,
    /// Same rules as `api_key`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 4096)]
    api_secret: Option<Option<SecretString>>,
    /// The owner's consent that the platform trades with this key (signing.md). Absent or
    /// `null`: unchanged, except that a new or cleared key or secret turns it off. Only the
    /// owner may turn it on; an operator may turn it off.
    #[serde(default)]
    trading_enabled: Option<bool>,
}

/// Distinguishes a field set to `null` (`Some(None)`) from an absent one (`None`, by default).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<SecretString>>, D::Error> {
    Option::<SecretString>::deserialize(d).map(Some)
}

impl UpdateBody {
    /// Converts the body into domain commands, naming the offending entry on error.
    pub fn into_domain(self) -> Result<Vec<CredentialUpdate>, ApiError> {
        self.credentials
            .into_iter()
            .enumerate()
            .map(|(index, entry)| {
                let locate = |error: ValidationError| located(index, error);
                Ok(CredentialUpdate {
                    broker: BrokerId::parse(&entry.broker).map_err(locate)?,
                    api_key: SecretInput::from_field("api_key", entry.api_key).map_err(locate)?,
                    api_secret: SecretInput::from_field("api_secret", entry.api_secret)
                        .map_err(locate)?,
                    trading_enabled: entry.trading_enabled,
                })
            })
            .collect()
    }
}

fn located(index: usize, error: ValidationError) -> ApiError {
    if error.is_bad_request() {
        return error.into();
    }
    let message = error.to_string();
    ApiError::validation(
        message.clone(),
        vec![FieldError {
            field: format!("credentials[{index}].{}", error.field().unwrap_or("entry")),
            message,
        }],
    )
}

/// A row's JSON is about 350 bytes: the answer is written into a buffer of its size at once,
/// not grown by doubling (`.json()` starts empty).
const JSON_BYTES_PER_CREDENTIAL: usize = 400;

fn no_store(body: CredentialList) -> HttpResponse {
    let mut json = Vec::with_capacity(32 + JSON_BYTES_PER_CREDENTIAL * body.credentials.len());
    match serde_json::to_writer(&mut json, &body) {
        Ok(()) => HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header(header::ContentType::json())
            .body(json),
        // What `.json()` answers, should serde_json ever fail on strings, booleans and dates.
        Err(e) => HttpResponse::from_error(actix_web::error::JsonPayloadError::Serialize(e)),
    }
}

async fn list_for(
    state: web::Data<AppState>,
    caller: Caller,
    target: UserId,
) -> Result<HttpResponse, ApiError> {
    let Some(ring) = state.keys.ring() else {
        let stored = state
            .credentials
            .list_stored(&caller.context(), target)
            .await?;
        return Err(ApiError::key_not_configured_with(stored));
    };
    let credentials = state
        .credentials
        .list(ring.as_ref(), &caller.context(), target)
        .await?;
    Ok(no_store(CredentialList { credentials }))
}

async fn update_for(
    state: web::Data<AppState>,
    caller: Caller,
    target: UserId,
    body: UpdateBody,
) -> Result<HttpResponse, ApiError> {
    let request = body.into_domain()?;
    let ring = state.ring()?;
    let credentials = state
        .credentials
        .update(ring.as_ref(), &caller.context(), target, request)
        .await?;
    Ok(no_store(CredentialList { credentials }))
}

async fn delete_for(
    state: web::Data<AppState>,
    caller: Caller,
    target: UserId,
    broker: &str,
) -> Result<HttpResponse, ApiError> {
    // Lenient: a row another writer stored under an unusual name can still be deleted.
    let broker = BrokerId::from_stored(broker)?;
    state
        .credentials
        .delete(&caller.context(), target, &broker)
        .await?;
    Ok(HttpResponse::NoContent()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish())
}

/// `GET /users/me/broker-credentials` (and the `api-credentials` alias).
#[utoipa::path(get, path = "/users/me/broker-credentials", tag = "credentials", security(("bearer" = [])),
    responses((status = 200, body = CredentialList), (status = 401, description = "Missing or invalid token", body = ErrorBody), (status = 403, description = "Missing capability", body = ErrorBody), (status = 503, description = "Key not configured or dependency unavailable", body = ErrorBody)))]
pub async fn list_own(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let target = caller.user_id;
    list_for(state, caller, target).await
}

/// `PUT /users/me/broker-credentials` (and the `api-credentials` aliases).
#[utoipa::path(put, path = "/users/me/broker-credentials", tag = "credentials", security(("bearer" = [])), request_body = UpdateBody,
    responses((status = 200, body = CredentialList), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody), (status = 401, description = "Missing or invalid token", body = ErrorBody), (status = 403, description = "Missing capability", body = ErrorBody), (status = 503, description = "Key not configured or dependency unavailable", body = ErrorBody)))]
pub async fn update_own(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<UpdateBody>,
) -> Result<HttpResponse, ApiError> {
    let target = caller.user_id;
    update_for(state, caller, target, body.into_inner()).await
}

/// `DELETE /users/me/broker-credentials/{broker}` (and the `api-credentials` alias).
#[utoipa::path(delete, path = "/users/me/broker-credentials/{broker}", tag = "credentials", security(("bearer" = [])), params(("broker" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 401, description = "Missing or invalid token", body = ErrorBody), (status = 403, description = "Missing capability", body = ErrorBody), (status = 503, description = "Key not configured or dependency unavailable", body = ErrorBody)))]
pub async fn delete_own(
    state: web::Data<AppState>,
    caller: Caller,
    broker: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let target = caller.user_id;
    delete_for(state, caller, target, &broker).await
}

/// `GET /users/{user_id}/broker-credentials` (operators).
#[utoipa::path(get, path = "/users/{user_id}/broker-credentials", tag = "operators", security(("bearer" = [])), params(("user_id" = i64, Path)),
    responses((status = 200, body = CredentialList), (status = 404, body = ErrorBody), (status = 401, description = "Missing or invalid token", body = ErrorBody), (status = 403, description = "Missing capability", body = ErrorBody), (status = 503, description = "Key not configured or dependency unavailable", body = ErrorBody)))]
pub async fn list_other(
    state: web::Data<AppState>,
    caller: Caller,
    user_id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let target = existing_user(&state, UserId(user_id.into_inner())).await?;
    list_for(state, caller, target).await
}

/// `PUT /users/{user_id}/broker-credentials` (operators).
#[utoipa::path(put, path = "/users/{user_id}/broker-credentials", tag = "operators", security(("bearer" = [])), params(("user_id" = i64, Path)), request_body = UpdateBody,
    responses((status = 200, body = CredentialList), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 401, description = "Missing or invalid token", body = ErrorBody), (status = 403, description = "Missing capability", body = ErrorBody), (status = 503, description = "Key not configured or dependency unavailable", body = ErrorBody)))]
pub async fn update_other(
    state: web::Data<AppState>,
    caller: Caller,
    user_id: web::Path<i64>,
    body: web::Json<UpdateBody>,
) -> Result<HttpResponse, ApiError> {
    let target = existing_user(&state, UserId(user_id.into_inner())).await?;
    update_for(state, caller, target, body.into_inner()).await
}

/// `DELETE /users/{user_id}/broker-credentials/{broker}` (operators).
#[utoipa::path(delete, path = "/users/{user_id}/broker-credentials/{broker}", tag = "operators", security(("bearer" = [])), params(("user_id" = i64, Path), ("broker" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 401, description = "Missing or invalid token", body = ErrorBody), (status = 403, description = "Missing capability", body = ErrorBody), (status = 503, description = "Key not configured or dependency unavailable", body = ErrorBody)))]
pub async fn delete_other(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(i64, String)>,
) -> Result<HttpResponse, ApiError> {
    let (user_id, broker) = path.into_inner();
    let target = existing_user(&state, UserId(user_id)).await?;
    delete_for(state, caller, target, &broker).await
}

/// Body of `POST /users/me/api-credentials/test`: values given override the stored ones.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct TestBody {
    /// Broker id, as in an update entry.
    #[schema(pattern = r"^\s*[A-Za-z0-9._-]{1,64}\s*$", example = "binance")]
    broker: String,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    api_key: Option<SecretString>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    api_secret: Option<SecretString>,
}

/// Answer of a connection test.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TestAnswer {
    broker: String,
    status: &'static str,
    tested_at: chrono::DateTime<chrono::Utc>,
    message: &'static str,
}

/// A value sent for a connection test: blank is "not sent"; longer than the limit is refused,
/// naming the field it came from.
fn given(
    field: &'static str,
    value: Option<SecretString>,
) -> Result<Option<PlainSecret>, ValidationError> {
    match value {
        Some(v) if v.expose_secret().trim().is_empty() => Ok(None),
        Some(v) if v.expose_secret().chars().count() > SECRET_MAX_CHARS => {
            Err(ValidationError::TooLong {
                field,
                max: SECRET_MAX_CHARS,
            })
        }
        other => Ok(other.map(PlainSecret::from)),
    }
}

/// `POST /users/me/api-credentials/test`.
#[utoipa::path(post, path = "/users/me/api-credentials/test", tag = "credentials", security(("bearer" = [])), request_body = TestBody,
    responses((status = 200, body = TestAnswer), (status = 400, body = ErrorBody), (status = 422, body = ErrorBody), (status = 401, description = "Missing or invalid token", body = ErrorBody), (status = 403, description = "Missing capability", body = ErrorBody), (status = 429, description = "Too many connection tests (per user or for the whole service); `Retry-After` says when to retry", body = ErrorBody), (status = 503, description = "Key not configured or dependency unavailable", body = ErrorBody)))]
pub async fn test_own(
    state: web::Data<AppState>,
    caller: Caller,
    http: HttpRequest,
    body: web::Json<TestBody>,
) -> Result<HttpResponse, ApiError> {
    let language = Language::of(&http);
    state
        .connection_tests
        .check(caller.user_id, &state.metrics)?;
    let body = body.into_inner();
    let request = CredentialTest {
        broker: BrokerId::parse(&body.broker)?,
        api_key: given("api_key", body.api_key)?,
        api_secret: given("api_secret", body.api_secret)?,
    };
    let ring = state.ring()?;
    let result = state
        .credentials
        .test(
            ring.as_ref(),
            state.probe.as_ref(),
            &caller.context(),
            caller.user_id,
            request,
        )
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::CONTENT_LANGUAGE, language.tag()))
        .insert_header((header::VARY, "Accept-Language"))
        .json(TestAnswer {
            status: result.outcome.status().as_str(),
            message: message(&result.broker, result.outcome, language),
            broker: result.broker.to_string(),
            tested_at: result.tested_at,
        }))
}

/// 404 `User not found` unless the user exists and is not deleted.
pub async fn existing_user(state: &web::Data<AppState>, id: UserId) -> Result<UserId, ApiError> {
    Ok(state.users.get(id).await?.id)
}

/// The language of a connection test's message: the first of French and English the client
/// accepts (`Accept-Language`, by quality then order), French when it names neither, as the
/// original service answered only in French.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Language {
    French,
    English,
}

impl Language {
    fn of(request: &HttpRequest) -> Self {
        request
            .headers()
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|value| value.to_str().ok())
            .map_or(Self::French, Self::parse)
    }

    fn parse(header: &str) -> Self {
        let mut best: Option<(f32, Self)> = None;
        for range in header.split(',').take(32) {
            let mut parts = range.split(';');
            let tag = parts.next().unwrap_or("").trim();
            let quality = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            let primary = tag.split('-').next().unwrap_or("");
            let language = if primary.eq_ignore_ascii_case("fr") {
                Self::French
            } else if primary.eq_ignore_ascii_case("en") {
                Self::English
            } else {
                continue;
            };
            if quality > 0.0 && best.is_none_or(|(q, _)| quality > q) {
                best = Some((quality, language));
            }
        }
        best.map_or(Self::French, |(_, language)| language)
    }

    fn tag(self) -> &'static str {
        match self {
            Self::French => "fr",
            Self::English => "en",
        }
    }
}

/// The message of a connection test: the original service's French strings, or their English
/// equivalents.
fn message(
    broker: &BrokerId,
    outcome: user_service_domain::TestOutcome,
    language: Language,
) -> &'static str {
    use user_service_domain::TestOutcome;
    let english = language == Language::English;
    match outcome {
        TestOutcome::MissingKeys | TestOutcome::Probed(ProbeStatus::MissingCredentials) => {
            if english {
                "The API key or secret is missing for this broker."
            } else {
                "Clés API manquantes pour ce broker."
            }
        }
        TestOutcome::Probed(ProbeStatus::Ok) if english => "Connection established.",
        TestOutcome::Probed(ProbeStatus::Ok) => "Connexion établie avec succès.",
        TestOutcome::Probed(ProbeStatus::Unauthorized) if english => {
            "The broker rejected the credentials provided."
        }
        TestOutcome::Probed(ProbeStatus::Unauthorized) => {
            "Le broker a rejeté les identifiants fournis."
        }
        TestOutcome::Probed(_) if !user_service_brokers::HttpBrokerProbe::supports(broker) => {
            if english {
                "Automated checks are not available for this broker."
            } else {
                "Vérification automatique indisponible pour ce broker."
            }
        }
        TestOutcome::Probed(_) if english => {
            "The broker could not be reached. Check the URL or try again."
        }
        TestOutcome::Probed(_) => "Impossible de joindre le broker. Vérifiez l'URL ou réessayez.",
    }
}

#[cfg(test)]
mod tests {
    use super::Language;

    #[test]
    fn the_message_language_follows_accept_language_and_defaults_to_french() {
        for (header, expected) in [
            ("en-GB,en;q=0.9", Language::English),
            ("fr-FR,fr;q=0.9,en;q=0.8", Language::French),
            ("de-DE,en;q=0.5,fr;q=0.4", Language::English),
            ("de-DE,fr;q=0.5,en;q=0.4", Language::French),
            ("en;q=0.2,fr;q=0.9", Language::French),
            ("en;q=0,de", Language::French),
            ("de, es", Language::French),
            ("", Language::French),
            ("EN-us", Language::English),
        ] {
            assert_eq!(Language::parse(header), expected, "{header}");
        }
    }
}
