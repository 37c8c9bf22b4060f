//! The words of the OpenAPI document that are for people: one summary per operation, an example
//! request body where one helps, and a description for every status an operation lists without
//! one. Kept apart from the handlers so that `/docs` reads as one voice.

use serde_json::{json, Value};
use utoipa::openapi::path::Operation;
use utoipa::openapi::{OpenApi, RefOr};
use utoipa::Modify;

/// Summary of each operation, by operation id (aliases: the id of the operation they repeat,
/// followed by `_alias`).
const SUMMARIES: &[(&str, &str)] = &[
    ("sign_up", "Create an account and sign in"),
    ("sign_in", "Sign in with e-mail and password"),
    ("refresh", "Exchange a refresh token for a new pair"),
    ("logout", "Sign out: end this session"),
    (
        "change_password",
        "Change your password (ends every other session)",
    ),
    ("me", "Who am I (the signed-in user's profile)"),
    ("list_own", "List your broker credentials (masked)"),
    ("update_own", "Add, replace or remove broker credentials"),
    ("delete_own", "Remove one broker's credentials"),
    (
        "test_own",
        "Test a broker connection with a stored or given key",
    ),
    ("list_own_audit", "Your credentials' audit trail"),
    ("list_other", "List a user's broker credentials (operators)"),
    (
        "update_other",
        "Change a user's broker credentials (operators)",
    ),
    (
        "delete_other",
        "Remove one of a user's broker credentials (operators)",
    ),
    (
        "sign",
        "Sign a broker request with a trader's stored key (platform services)",
    ),
    (
        "list_other_audit",
        "A user's credentials audit trail (operators)",
    ),
    (
        "register",
        "Create your profile (or, as a platform service, a new user)",
    ),
    ("create", "Create a user (operators)"),
    ("list", "List users by page (operators)"),
    ("get_me", "Your profile"),
    ("update_me", "Update your profile"),
    ("delete_me", "Delete your account"),
    ("get_user", "A user's profile (operators)"),
    ("patch_user", "Update a user's profile (operators)"),
    ("delete_user", "Delete a user's account (operators)"),
    ("activate", "Activate an account"),
    ("put_preferences", "Replace your preferences"),
    ("get_onboarding", "Your onboarding progress"),
    ("complete_step", "Mark an onboarding step done"),
    ("reset_onboarding", "Start onboarding again"),
    ("health", "Is the process alive"),
    (
        "ready",
        "Is the service ready to serve (database, key ring, cut-over mode)",
    ),
    ("metrics", "Prometheus metrics"),
];

/// What an alias is, appended to the summary of the operation it repeats.
const ALIAS_NOTE: &str = " (the original service's path)";

/// Example request bodies, by operation id; each is accepted by the service as it stands.
fn example(operation_id: &str) -> Option<Value> {
    let credentials = json!({"credentials": [
        {"broker": "binance", "api_key": "my-binance-api-key", "api_secret": "my-binance-api-secret"},
        {"broker": "kraken", "api_secret": null}
    ]});
    let sign_in = json!({"email": "trader@example.com", "password": "Correct-Horse-9!"});
    Some(match operation_id {
        "update_own" | "update_own_alias" | "update_own_post_alias" | "update_other" => credentials,
        "sign_up" | "sign_in" => sign_in,
        "refresh" | "logout" => json!({"refresh_token": "eyJhbGciOiJIUzI1NiJ9.refresh.token"}),
        "register" | "create" => json!({"email": "trader@example.com", "first_name": "Ada"}),
        "update_me" | "patch_user" => json!({"first_name": "Ada", "phone": "+33 1 23 45 67 89"}),
        "put_preferences" => json!({"preferences": {"theme": "dark", "language": "fr"}}),
        "test_own" => json!({"broker": "binance"}),
        "sign" => json!({
            "method": "POST",
            "path": "/api/v3/order",
            "query": "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.001"
        }),
        _ => return None,
    })
}

/// Description of a status an operation lists without one.
fn status_description(status: &str) -> &'static str {
    match status {
        "200" => "Success",
        "201" => "Created",
        "204" => "Done; no content",
        "400" => "Malformed request, or a rule the schema cannot express (see `detail`)",
        "401" => "Missing, expired or invalid bearer token",
        "403" => "The token lacks the capability this route needs, or an actor header names someone else",
        "404" => "No such user or credential",
        "409" => "Conflict with the stored state (e.g. the e-mail is taken, or the row changed meanwhile)",
        "413" => "Body larger than the limit (64 KiB)",
        "415" => "Content-Type is not application/json",
        "422" => "A parameter or field is invalid (the fields are named)",
        "429" => "Too many requests; `Retry-After` says when to retry",
        "503" => "A dependency (database, key ring) is unavailable; `Retry-After` says when to retry",
        _ => "See `detail`",
    }
}

/// Applies [`SUMMARIES`], the examples and the status descriptions to every operation.
pub struct Prose;

impl Prose {
    fn apply(operation: &mut Operation) {
        let Some(id) = operation.operation_id.clone() else {
            return;
        };
        let (base, alias) = match id.strip_suffix("_post_alias").or(id.strip_suffix("_alias")) {
            Some(base) => (base, true),
            None => (id.as_str(), false),
        };
        if let Some((_, summary)) = SUMMARIES.iter().find(|(op, _)| *op == base) {
            operation.summary = Some(if alias {
                format!("{summary}{ALIAS_NOTE}")
            } else {
                (*summary).to_owned()
            });
        }
        if let (Some(body), Some(example)) = (operation.request_body.as_mut(), example(&id)) {
            for content in body.content.values_mut() {
                content.example = Some(example.clone());
            }
        }
        for (status, response) in &mut operation.responses.responses {
            if let RefOr::T(response) = response {
                if response.description.is_empty() {
                    response.description = status_description(status).to_owned();
                }
            }
        }
    }
}

impl Modify for Prose {
    fn modify(&self, openapi: &mut OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            operations_mut(item).for_each(Self::apply);
        }
    }
}

/// Every operation of a path item (the methods this service serves).
pub(super) fn operations_mut(
    item: &mut utoipa::openapi::path::PathItem,
) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.patch,
    ]
    .into_iter()
    .flatten()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn every_operation_has_a_summary_without_markup_and_every_status_a_description() {
        let document: Value = serde_json::from_str(&crate::http::openapi::document()).unwrap();
        let mut ids = std::collections::HashSet::new();
        for (path, item) in document["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let Some(id) = operation["operationId"].as_str() else {
                    continue;
                };
                assert!(ids.insert(id.to_owned()), "operationId {id} is used twice");
                let summary = operation["summary"].as_str().unwrap_or_default();
                assert!(
                    !summary.is_empty() && !summary.contains('`') && !summary.contains('/'),
                    "{method} {path}: summary {summary:?}"
                );
                for (status, response) in operation["responses"].as_object().unwrap() {
                    assert!(
                        !response["description"]
                            .as_str()
                            .unwrap_or_default()
                            .is_empty(),
                        "{method} {path} {status}: no description"
                    );
                }
            }
        }
        for route in [
            "/auth/register",
            "/auth/login",
            "/auth/refresh",
            "/auth/logout",
            "/auth/password",
            "/auth/me",
        ] {
            assert!(
                document["paths"][route].is_object(),
                "{route} is documented"
            );
        }
    }
}
