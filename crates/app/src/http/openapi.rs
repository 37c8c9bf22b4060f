//! The OpenAPI document, generated from the handlers' annotations (`/openapi.json`), and the
//! Swagger UI (`/docs`, assets vendored in the binary).

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::http::error::{ErrorBody, ErrorCode, FieldError};
use crate::http::openapi_text::{operations_mut, Prose};
use crate::http::{audit, auth, credentials, service, signing, users};

/// Routes that serve the same operation as another path (the original service's aliases).
const ALIASES: &[(&str, &str, &[&str])] = &[
    (
        "/users/me/api-credentials",
        "/users/me/broker-credentials",
        &["get", "put", "post"],
    ),
    (
        "/users/me/api-credentials/{broker}",
        "/users/me/broker-credentials/{broker}",
        &["delete"],
    ),
];

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "user-service",
        description = "User profiles and broker API credentials encrypted at rest with Fernet. \
                       Errors are `{detail, code, request_id}`; every response carries `X-Request-ID`.",
    ),
    paths(
        auth::register,
        auth::login,
        auth::refresh,
        auth::logout,
        auth::change_password,
        auth::me,
        credentials::list_own,
        credentials::update_own,
        credentials::delete_own,
        credentials::test_own,
        credentials::list_other,
        credentials::update_other,
        credentials::delete_other,
        signing::sign,
        audit::list_own,
        audit::list_other,
        users::register,
        users::create,
        users::list,
        users::get_me,
        users::update_me,
        users::delete_me,
        users::get_user,
        users::patch_user,
        users::delete_user,
        users::activate,
        users::put_preferences,
        users::get_onboarding,
        users::complete_step,
        users::reset_onboarding,
        service::health,
        service::ready,
        service::metrics,
    ),
    components(schemas(ErrorBody, ErrorCode, FieldError, users::OnboardingStepName, auth::TokenPairSchema)),
    modifiers(&Security, &Aliases, &CommonStatuses, &Prose),
    tags(
        (name = "sign-in", description = "Embedded sign-in (AUTH_MODE=embedded, the default; with external these routes answer 404): how to get a token for the routes below"),
        (name = "credentials", description = "The caller's broker credentials (can.use_users)"),
        (name = "operators", description = "Other accounts' credentials (can.use_users + can.manage_users)"),
        (name = "signing", description = "Broker requests signed with a trader's stored key, for the platform services SIGNING_SERVICES lists (service tokens only): the secret never leaves this service"),
        (name = "users", description = "Profiles"),
        (name = "onboarding", description = "Onboarding progress"),
        (name = "service", description = "Liveness, readiness, metrics"),
    )
)]
#[derive(Debug)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

struct Aliases;

impl Modify for Aliases {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (alias, source, methods) in ALIASES {
            let Some(item) = openapi.paths.paths.get(*source).cloned() else {
                continue;
            };
            let mut alias_item = item.clone();
            // POST on the alias is the original's way to PUT.
            if methods.contains(&"post") {
                alias_item.post = item.put.clone().map(|mut operation| {
                    operation.operation_id = operation.operation_id.map(|id| format!("{id}_post"));
                    operation
                });
            }
            for operation in operations_mut(&mut alias_item) {
                operation.operation_id = operation
                    .operation_id
                    .as_ref()
                    .map(|id| format!("{id}_alias"));
            }
            openapi.paths.paths.insert((*alias).to_owned(), alias_item);
        }
    }
}

/// The statuses any operation can answer because of how its request is read, documented on every
/// operation they apply to: a JSON body can be malformed (400), too large (413) or of another
/// content type (415); a path or query parameter can fail to parse (422).
struct CommonStatuses;

impl CommonStatuses {
    fn error(description: &str) -> utoipa::openapi::RefOr<utoipa::openapi::Response> {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build()
            .into()
    }
}

impl Modify for CommonStatuses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let shared_parameters = item.parameters.as_ref().is_some_and(|p| !p.is_empty());
            for operation in operations_mut(item) {
                let mut add = Vec::new();
                if operation.request_body.is_some() {
                    add.push(("400", "Malformed JSON, or a rule the schema cannot express"));
                    add.push(("413", "Body larger than the limit (64 KiB)"));
                    add.push(("415", "Content-Type is not application/json"));
                }
                let parameters = operation.parameters.as_ref().is_some_and(|p| !p.is_empty());
                if parameters || shared_parameters || operation.request_body.is_some() {
                    add.push((
                        "422",
                        "A parameter or field is invalid (the fields are named)",
                    ));
                }
                for (status, description) in add {
                    operation
                        .responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| Self::error(description));
                }
            }
        }
    }
}

/// The document as served, pretty-printed (also the committed snapshot `docs/openapi.json`).
pub fn document() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|_| "{}".to_owned())
}
