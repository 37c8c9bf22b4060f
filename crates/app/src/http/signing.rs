//! `POST /users/{user_id}/broker-credentials/{broker}/sign`: a platform service has a broker
//! request signed with a trader's stored key, which never leaves the service (docs/signing.md).

use std::collections::BTreeMap;
use std::fmt;

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use user_service_domain::{
    BrokerId, HttpMethod, RequestContext, SignOrder, Signing, UnsignedRequest, UserId,
};

use crate::http::credentials::existing_user;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::middleware::AnyCaller;
use crate::state::AppState;

/// The request as the calling service will send it to the broker.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct SignBody {
    /// `GET`, `POST`, `PUT` or `DELETE` (any case).
    #[schema(example = "POST")]
    method: String,
    /// The broker API path, starting with `/`, without query (at most 512 bytes).
    #[schema(example = "/api/v3/order", max_length = 512)]
    path: String,
    /// The query string without `?`, form-encoded (at most 8 KiB); no `signature`.
    #[serde(default)]
    #[schema(
        example = "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.001",
        max_length = 8192
    )]
    query: Option<String>,
    /// The form-encoded body (at most 8 KiB); none for `GET`; no `signature`.
    #[serde(default)]
    #[schema(max_length = 8192)]
    body: Option<String>,
}

/// Order parameters are the trader's business: sizes only.
impl fmt::Debug for SignBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignBody")
            .field("method", &self.method)
            .field("path_bytes", &self.path.len())
            .field("query_bytes", &self.query.as_ref().map_or(0, String::len))
            .field("body_bytes", &self.body.as_ref().map_or(0, String::len))
            .finish()
    }
}

/// Exactly what to send to the broker: add the headers, use this query string and body.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SignAnswer {
    /// Headers to add (the API key and, for Kraken, the signature; a content type for a body).
    headers: BTreeMap<String, String>,
    /// The final query string, without `?` (empty when none).
    query: String,
    /// The final body (empty when none).
    body: String,
}

/// Header values hold the API key and the signature: `Debug` shows names and sizes only.
impl fmt::Debug for SignAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignAnswer")
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("query_bytes", &self.query.len())
            .field("body_bytes", &self.body.len())
            .finish()
    }
}

/// `POST /users/{user_id}/broker-credentials/{broker}/sign`.
#[utoipa::path(post, path = "/users/{user_id}/broker-credentials/{broker}/sign", tag = "signing", security(("bearer" = [])),
    params(("user_id" = i64, Path, description = "The trader whose stored key signs"), ("broker" = String, Path, description = "`binance` or `kraken`")),
    request_body = SignBody,
    responses(
        (status = 200, description = "The request to send, signed; `Cache-Control: no-store`", body = SignAnswer),
        (status = 400, description = "Malformed body or broker", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "`service_principal_required` (a user's token), `signing_service_not_listed`, `missing_capability` (the trader lacks `can.route_orders`), `trading_not_enabled` (no owner consent), `signing_path_refused` (not in the broker's allow-list)", body = ErrorBody),
        (status = 404, description = "Unknown user, or no credential stored for this broker", body = ErrorBody),
        (status = 409, description = "`signing_unsupported` (Alpaca and brokers without a signer), `credential_unusable` (a half missing, undecryptable, failing its integrity check)", body = ErrorBody),
        (status = 422, description = "The request breaks a limit (the field `request` says which)", body = ErrorBody),
        (status = 429, description = "Too many signatures for this trader or this service; `Retry-After`", body = ErrorBody),
        (status = 503, description = "Key not configured or dependency unavailable", body = ErrorBody)))]
pub async fn sign(
    state: web::Data<AppState>,
    caller: AnyCaller,
    path: web::Path<(i64, String)>,
    body: web::Json<SignBody>,
) -> Result<HttpResponse, ApiError> {
    let (user_id, broker) = path.into_inner();
    let outcome = sign_for(&state, caller, user_id, &broker, body.into_inner()).await;
    state.metrics.signature(
        &broker,
        match &outcome {
            Ok(_) => "signed",
            Err(error) => error.code().as_str(),
        },
    );
    let signed = outcome?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(signed))
}

async fn sign_for(
    state: &web::Data<AppState>,
    caller: AnyCaller,
    user_id: i64,
    broker: &str,
    body: SignBody,
) -> Result<SignAnswer, ApiError> {
    let service = state
        .settings
        .signing_services
        .authorize(&caller.0.principal)?;
    let broker = BrokerId::parse(broker)?;
    let target = existing_user(state, UserId(user_id)).await?;
    state
        .signing_limits
        .check(&service, target, &state.metrics)?;
    let request = UnsignedRequest::parse(
        HttpMethod::parse(&body.method)?,
        &body.path,
        body.query.as_deref(),
        body.body.as_deref(),
    )?;
    let ring = state.ring()?;
    let ctx = RequestContext::for_service(service, caller.0.request_id);
    let ports = Signing {
        cipher: ring.as_ref(),
        signer: state.signer.as_ref(),
        entitlements: state.entitlements.as_ref(),
    };
    let order = SignOrder {
        target,
        broker,
        request,
    };
    let signed = state.credentials.sign(ports, &ctx, order).await?;
    Ok(SignAnswer {
        headers: signed.headers.into_iter().collect(),
        query: signed.query,
        body: signed.body,
    })
}
