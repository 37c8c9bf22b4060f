//! The HTTP API: routes, extractor configuration and middleware wiring.

pub mod account_page;
pub mod audit;
pub mod auth;
pub mod credentials;
pub mod error;
pub mod limits;
pub mod metrics;
pub mod middleware;
pub mod openapi;
mod openapi_text;
mod resource;
pub mod service;
pub mod signing;
pub mod users;

use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::{web, HttpRequest, HttpResponse};
use user_service_domain::Action;
use utoipa::OpenApi;

use error::{ApiError, ErrorCode, FieldError};
use resource::{guarded, open};

/// Registers every route on `cfg`.
pub fn configure(cfg: &mut web::ServiceConfig, max_body_bytes: usize) {
    cfg.app_data(json_config(max_body_bytes))
        .app_data(web::PathConfig::default().error_handler(path_error))
        .app_data(web::QueryConfig::default().error_handler(query_error))
        .service(open("/health", "GET").route(web::get().to(service::health)))
        .service(open("/ready", "GET").route(web::get().to(service::ready)))
        .service(open("/metrics", "GET").route(web::get().to(service::metrics)))
        .service(open("/openapi.json", "GET").route(web::get().to(openapi_json)))
        .service(
            utoipa_swagger_ui::SwaggerUi::new("/docs/{_:.*}")
                .url("/openapi.json", openapi::ApiDoc::openapi()),
        )
        .service(web::redirect("/docs", "/docs/"));

    // Embedded sign-in (`/auth/*`, only with AUTH_MODE=embedded) and the `/account` page.
    auth::configure(cfg);
    account_page::configure(cfg);

    use credentials as c;
    use users as u;
    let own = Action::OwnAccount;
    let operator = Action::OtherAccountCredentials;
    let admin = Action::UserAdministration;
    // `/users/me…` before `/users/{user_id}…`, so that `me` is never read as an id.
    cfg.service(guarded(
        "/users/me/broker-credentials",
        "GET, PUT",
        own,
        |r| {
            r.route(web::get().to(c::list_own))
                .route(web::put().to(c::update_own))
        },
    ))
    .service(guarded(
        "/users/me/broker-credentials/audit",
        "GET",
        own,
        |r| r.route(web::get().to(audit::list_own)),
    ))
    .service(guarded(
        "/users/me/broker-credentials/{broker}",
        "DELETE",
        own,
        |r| r.route(web::delete().to(c::delete_own)),
    ))
    .service(guarded(
        "/users/me/api-credentials",
        "GET, POST, PUT",
        own,
        |r| {
            r.route(web::get().to(c::list_own))
                .route(web::post().to(c::update_own))
                .route(web::put().to(c::update_own))
        },
    ))
    .service(guarded(
        "/users/me/api-credentials/test",
        "POST",
        own,
        |r| r.route(web::post().to(c::test_own)),
    ))
    .service(guarded(
        "/users/me/api-credentials/{broker}",
        "DELETE",
        own,
        |r| r.route(web::delete().to(c::delete_own)),
    ))
    .service(guarded("/users/me/preferences", "PUT", own, |r| {
        r.route(web::put().to(u::put_preferences))
    }))
    .service(guarded("/users/me/onboarding", "GET", own, |r| {
        r.route(web::get().to(u::get_onboarding))
    }))
    .service(guarded("/users/me/onboarding/reset", "POST", own, |r| {
        r.route(web::post().to(u::reset_onboarding))
    }))
    .service(guarded(
        "/users/me/onboarding/steps/{step}",
        "POST",
        own,
        |r| r.route(web::post().to(u::complete_step)),
    ))
    .service(guarded("/users/me", "GET, PUT, DELETE", own, |r| {
        r.route(web::get().to(u::get_me))
            .route(web::put().to(u::update_me))
            .route(web::delete().to(u::delete_me))
    }))
    .service(guarded("/users/register", "POST", Action::Register, |r| {
        r.route(web::post().to(u::register))
    }))
    .service(guarded("/users", "GET, POST", admin, |r| {
        r.route(web::get().to(u::list))
            .route(web::post().to(u::create))
    }))
    .service(guarded(
        "/users/{user_id}/broker-credentials",
        "GET, PUT",
        operator,
        |r| {
            r.route(web::get().to(c::list_other))
                .route(web::put().to(c::update_other))
        },
    ))
    .service(guarded(
        "/users/{user_id}/broker-credentials/audit",
        "GET",
        operator,
        |r| r.route(web::get().to(audit::list_other)),
    ))
    .service(guarded(
        "/users/{user_id}/broker-credentials/{broker}",
        "DELETE",
        operator,
        |r| r.route(web::delete().to(c::delete_other)),
    ))
    .service(guarded(
        "/users/{user_id}/broker-credentials/{broker}/sign",
        "POST",
        Action::SignBrokerRequest,
        |r| r.route(web::post().to(signing::sign)),
    ))
    .service(guarded(
        "/users/{user_id}/activate",
        "POST",
        Action::RegisterSelf,
        |r| r.route(web::post().to(u::activate)),
    ))
    .service(guarded(
        "/users/{user_id}",
        "GET, PATCH, DELETE",
        admin,
        |r| {
            r.route(web::get().to(u::get_user))
                .route(web::patch().to(u::patch_user))
                .route(web::delete().to(u::delete_user))
        },
    ));
}

/// `GET /openapi.json`: the document generated from the handlers.
async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(openapi::document())
}

/// `404 Not Found` for unknown paths, in the JSON error shape.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found("Not Found"))
}

fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .content_type_required(true)
        .content_type(|mime| mime.subtype() == "json" || mime.suffix().is_some_and(|s| s == "json"))
        .error_handler(move |error, _req: &HttpRequest| json_error(error, limit).into())
}

/// Maps body errors to 400/413/415/422. Never echoes the body: serde's messages can quote a
/// value, and a value may be a secret.
fn json_error(error: JsonPayloadError, limit: usize) -> ApiError {
    match error {
        JsonPayloadError::ContentType => ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "Content-Type must be application/json",
        ),
        JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
            ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("Request body is larger than {limit} bytes"),
            )
        }
        JsonPayloadError::Deserialize(e) if e.is_data() => ApiError::validation(
            format!(
                "Request body does not have the expected fields or types (line {}, column {})",
                e.line(),
                e.column()
            ),
            vec![FieldError {
                field: "body".into(),
                message: data_error_kind(&e),
            }],
        ),
        JsonPayloadError::Deserialize(e) => ApiError::new(
            ErrorCode::MalformedJson,
            format!(
                "Request body is not valid JSON (line {}, column {})",
                e.line(),
                e.column()
            ),
        ),
        _ => ApiError::new(ErrorCode::InvalidBody, "Request body could not be read"),
    }
}

/// A description of a serde data error that names fields but never quotes a value.
fn data_error_kind(error: &serde_json::Error) -> String {
    let text = error.to_string();
    // serde's "missing field `x`" and "unknown variant" name fields, not values; anything else
    // (invalid type/value) may quote the value and is summarised.
    if let Some(rest) = text.strip_prefix("missing field ") {
        let field = rest.split(" at line").next().unwrap_or(rest);
        return format!("missing field {field}");
    }
    "a field has the wrong type (expected strings for broker, api_key, api_secret)".to_owned()
}

fn path_error(error: PathError, _req: &HttpRequest) -> actix_web::Error {
    let _ = error;
    ApiError::validation(
        "Invalid path parameter",
        vec![FieldError {
            field: "path".into(),
            message: "user_id must be an integer".into(),
        }],
    )
    .into()
}

fn query_error(error: QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let _ = error;
    ApiError::validation(
        "Invalid query parameters",
        vec![FieldError {
            field: "query".into(),
            message: "limit and offset must be non-negative integers".into(),
        }],
    )
    .into()
}
