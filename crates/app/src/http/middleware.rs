//! Middleware: request context (request id, error bodies, access log, metrics) and the
//! authentication + capability check that runs before every protected handler.

use std::future::{ready, Ready};
use std::rc::Rc;
use std::time::Instant;

use actix_web::body::{to_bytes, BoxBody, MessageBody};
use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest, HttpResponse, ResponseError};
use futures_util::future::LocalBoxFuture;
use user_service_domain::ports::EntitlementsProvider;
use user_service_domain::{
    authorize_principal, AccessDenied, Action, Capabilities, Principal, RequestContext, UserId,
};

use crate::http::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// The request id of the current request (echoed or generated).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");

/// A caller-supplied id is echoed only if it is short and made of safe characters, so that it
/// cannot forge log lines.
fn incoming_request_id(headers: &HeaderMap) -> Option<String> {
    [X_REQUEST_ID, X_CORRELATION_ID]
        .iter()
        .filter_map(|name| headers.get(name)?.to_str().ok())
        .map(str::trim)
        .find(|id| {
            !id.is_empty()
                && id.len() <= 128
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
        })
        .map(str::to_owned)
}

/// A new request id: this process's random prefix (so ids of several replicas never meet) and
/// a counter, which costs no system call per request (a random UUID asks the kernel each time).
fn new_request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static PREFIX: OnceLock<String> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let prefix = PREFIX.get_or_init(|| uuid::Uuid::new_v4().simple().to_string()[..12].to_owned());
    format!("{prefix}-{:x}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Assigns the request id, adds it to error bodies and the `X-Request-ID` header, writes the
/// access-log line (never a body or an `Authorization` value) and records metrics.
pub async fn request_context(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let started = Instant::now();
    let id = incoming_request_id(req.headers()).unwrap_or_else(new_request_id);
    req.extensions_mut().insert(RequestId(id.clone()));
    let state = req.app_data::<web::Data<AppState>>().cloned();

    // Handlers, extractors and `Authorize` turn their errors into responses, so an `Err` here
    // can only come from actix itself; it is answered by actix.
    let response = next.call(req).await?.map_into_boxed_body();
    let status = response.status();
    let mut response = if status.is_client_error() || status.is_server_error() {
        with_request_id_in_body(response, &id).await
    } else {
        response
    };
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(X_REQUEST_ID, value);
    }
    protect(&mut response);

    let route = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = response.request().method().as_str().to_owned();
    let latency = started.elapsed();
    log::info!(
        target: "access",
        "{method} {route} {} {:.3}ms request_id={id}",
        status.as_u16(),
        latency.as_secs_f64() * 1000.0
    );
    if let Some(state) = state {
        state
            .metrics
            .observe(&method, &route, status.as_u16(), latency);
    }
    Ok(response)
}

/// The Content-Security-Policy of the Swagger UI at `/docs`: its own scripts and styles only
/// (it sets inline styles itself), no framing, no form submission elsewhere.
const DOCS_POLICY: &str =
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
    img-src 'self' data:; connect-src 'self'; object-src 'none'; frame-ancestors 'none'; \
    base-uri 'none'; form-action 'none'";

/// Headers every answer gets unless its handler set them: no caching of JSON (profiles and
/// credentials are personal), no MIME sniffing, no framing; the Swagger UI gets its policy.
fn protect(response: &mut ServiceResponse<BoxBody>) {
    let is_docs = response.request().path().starts_with("/docs");
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let headers = response.headers_mut();
    if is_json && !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if is_docs && !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(DOCS_POLICY),
        );
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !headers.contains_key(header::X_FRAME_OPTIONS) {
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
}

/// Adds `request_id` to a JSON error body.
async fn with_request_id_in_body(
    response: ServiceResponse<BoxBody>,
    id: &str,
) -> ServiceResponse<BoxBody> {
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let (request, response) = response.into_parts();
    let mut builder = HttpResponse::build(response.status());
    for (name, value) in response.headers() {
        if name != header::CONTENT_LENGTH {
            builder.append_header((name.clone(), value.clone()));
        }
    }
    let body = to_bytes(response.into_body()).await.unwrap_or_default();
    let new_body = match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(serde_json::Value::Object(mut object)) if is_json => {
            object.insert("request_id".into(), id.into());
            serde_json::to_vec(&object).unwrap_or_else(|_| body.to_vec())
        }
        // Errors produced outside our handlers (rare): answer our JSON shape.
        _ => {
            let detail = response_detail(&body);
            builder.insert_header((header::CONTENT_TYPE, "application/json"));
            serde_json::to_vec(&serde_json::json!({
                "detail": detail,
                "code": "http_error",
                "request_id": id,
            }))
            .unwrap_or_default()
        }
    };
    ServiceResponse::new(request, builder.body(new_body))
}

fn response_detail(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() || text.len() > 200 {
        "Request failed".to_owned()
    } else {
        text.to_owned()
    }
}

/// The authenticated principal of a protected route and what it holds, put in the request by
/// [`Authorize`].
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// Who the token speaks for.
    pub principal: Principal,
    /// Capabilities held (empty for routes that require none, and for services).
    pub capabilities: Capabilities,
    /// Request id, for audit records.
    pub request_id: String,
}

/// The authenticated principal of a route that admits services (`POST /users/register`).
#[derive(Debug, Clone)]
pub struct AnyCaller(pub Authenticated);

/// The authenticated user of a protected route (every route but those that admit services).
#[derive(Debug, Clone)]
pub struct Caller {
    /// The verified user (the token's `sub`).
    pub user_id: UserId,
    /// Capabilities held (empty for routes that require none).
    pub capabilities: Capabilities,
    /// Request id, for audit records.
    pub request_id: String,
}

impl Caller {
    /// The audit context of this caller's request.
    pub fn context(&self) -> RequestContext {
        RequestContext::new(self.user_id, self.request_id.clone())
    }
}

fn authenticated(req: &HttpRequest) -> Result<Authenticated, ApiError> {
    // Present whenever the route is wrapped in `Authorize`; absent means a wiring mistake,
    // which must fail closed.
    req.extensions()
        .get::<Authenticated>()
        .cloned()
        .ok_or_else(ApiError::missing_token)
}

impl FromRequest for AnyCaller {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        ready(authenticated(req).map(Self))
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        ready(authenticated(req).and_then(|auth| match auth.principal {
            Principal::User(user_id) => Ok(Caller {
                user_id,
                capabilities: auth.capabilities,
                request_id: auth.request_id,
            }),
            // `Authorize` already refused services on routes that do not admit them.
            Principal::Service(_) => Err(AccessDenied::ServicePrincipal.into()),
        }))
    }
}

/// Authenticates the bearer token and checks the capabilities `action` requires, before the
/// handler runs. Answers JSON 400/401/403/503 itself.
#[derive(Debug, Clone, Copy)]
pub struct Authorize(pub Action);

impl<S, B> Transform<S, ServiceRequest> for Authorize
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<BoxBody>;
    type Error = actix_web::Error;
    type Transform = AuthorizeMiddleware<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(AuthorizeMiddleware {
            service: Rc::new(service),
            action: self.0,
        }))
    }
}

/// The service [`Authorize`] wraps around a route.
#[allow(missing_debug_implementations)]
pub struct AuthorizeMiddleware<S> {
    service: Rc<S>,
    action: Action,
}

impl<S, B> Service<ServiceRequest> for AuthorizeMiddleware<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<BoxBody>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let service = Rc::clone(&self.service);
        let action = self.action;
        Box::pin(async move {
            match authenticate(&req, action).await {
                Ok(authenticated) => {
                    req.extensions_mut().insert(authenticated);
                    service
                        .call(req)
                        .await
                        .map(ServiceResponse::map_into_boxed_body)
                }
                Err(error) => {
                    let response = error.error_response();
                    Ok(req.into_response(response))
                }
            }
        })
    }
}

/// The bearer token of a request, if any.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

async fn authenticate(req: &ServiceRequest, action: Action) -> Result<Authenticated, ApiError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::new(ErrorCode::InternalError, "application state missing"))?;
    let token = bearer_token(req.headers()).ok_or_else(ApiError::missing_token)?;
    let principal = state
        .tokens()
        .verify_access(token)
        .map_err(|_| ApiError::invalid_token())?;
    check_actor_headers(req.headers(), &principal)?;
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default();
    let capabilities = match &principal {
        Principal::User(user) if !action.required().is_empty() => state
            .entitlements
            .capabilities(*user)
            .await
            .map_err(|e| ApiError::unavailable(&e))?,
        _ => Capabilities::none(),
    };
    authorize_principal(&principal, &capabilities, action)?;
    log::debug!(target: "access", "{principal} authorized for {action:?} request_id={request_id}");
    Ok(Authenticated {
        principal,
        capabilities,
        request_id,
    })
}

/// Every `X-Customer-ID` and `X-User-ID` value, when present, must name the token's subject.
fn check_actor_headers(headers: &HeaderMap, principal: &Principal) -> Result<(), ApiError> {
    for name in ["x-customer-id", "x-user-id"] {
        for value in headers.get_all(name) {
            let claimed = value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<i64>().ok())
                .ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::InvalidActorHeader,
                        "Invalid x-customer-id header",
                    )
                })?;
            if principal.user() != Some(UserId(claimed)) {
                return Err(ApiError::new(ErrorCode::ActorMismatch, "Actor mismatch"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn unsafe_request_ids_are_not_echoed() {
        let mut headers = HeaderMap::new();
        headers.insert(X_REQUEST_ID, HeaderValue::from_static("abc\"injected"));
        assert_eq!(incoming_request_id(&headers), None);
        headers.insert(X_CORRELATION_ID, HeaderValue::from_static("corr-42"));
        assert_eq!(incoming_request_id(&headers).as_deref(), Some("corr-42"));
    }

    #[test]
    fn every_actor_header_value_must_name_the_subject() {
        let me = Principal::User(UserId(7));
        let mut headers = HeaderMap::new();
        headers.append(
            HeaderName::from_static("x-customer-id"),
            HeaderValue::from_static("7"),
        );
        assert!(check_actor_headers(&headers, &me).is_ok());
        headers.append(
            HeaderName::from_static("x-user-id"),
            HeaderValue::from_static("8"),
        );
        assert_eq!(
            check_actor_headers(&headers, &me).unwrap_err().code(),
            ErrorCode::ActorMismatch
        );
        let mut headers = HeaderMap::new();
        headers.append(
            HeaderName::from_static("x-customer-id"),
            HeaderValue::from_static("7"),
        );
        headers.append(
            HeaderName::from_static("x-customer-id"),
            HeaderValue::from_static("9"),
        );
        assert_eq!(
            check_actor_headers(&headers, &me).unwrap_err().code(),
            ErrorCode::ActorMismatch,
            "a second value of the same header counts too"
        );
    }

    #[test]
    fn only_bearer_tokens_are_read() {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer_token(&headers), None);
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert_eq!(bearer_token(&headers), Some("abc"));
    }
}
