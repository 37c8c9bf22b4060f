//! `user-service smoke <base-url>`: the post-deployment checks of the operating document
//! against a running deployment, one `PASS <check>` / `FAIL <check>: <reason>` line each
//! (`SKIP <check>: <reason>` when a check cannot run), non-zero exit on any failure.
//!
//! Without `--token` the command creates a throw-away user directly in the database (it runs
//! with the server's environment, like `users create`, which it reuses) and soft-deletes it at
//! the end. The credential it stores uses the broker id [`SMOKE_BROKER`] and random values;
//! neither the values nor any token are ever printed.

use std::io::Write;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use user_service_domain::{mask, BrokerId, UserId};

use super::context::{CommandError, Context};

/// Broker id of the credential the checks store and delete; no real broker uses it, so a
/// given token's real credentials are never touched.
pub const SMOKE_BROKER: &str = "smoke-test";

/// How long one HTTP call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// Options of `user-service smoke`.
#[derive(Debug)]
pub struct SmokeOptions {
    /// Base URL of the deployment, e.g. `http://127.0.0.1:8000`.
    pub base_url: String,
    /// Access token of an existing user to run the credential checks as.
    pub token: Option<SecretString>,
    /// Whether to create a test user when no token is given.
    pub create_user: bool,
}

/// Runs every check, writing one line per check to `out`. `Err` when any check failed.
pub(super) async fn run(
    context: &mut Context<'_>,
    options: SmokeOptions,
    out: &mut dyn Write,
) -> Result<(), CommandError> {
    let client = Client::new(&options.base_url);
    let mut report = Report::new(out);

    report.record("health", client.health())?;

    let mut created: Option<UserId> = None;
    let token = match options.token {
        Some(token) => Some(token),
        None if options.create_user => match create_test_user(context).await {
            Ok((id, token)) => {
                report.record("create test user", Ok(()))?;
                created = Some(id);
                Some(token)
            }
            Err(reason) => {
                report.record("create test user", Err(reason))?;
                None
            }
        },
        None => None,
    };

    match &token {
        Some(token) => credential_checks(&client, token, created, context, &mut report).await?,
        None => {
            let reason = if options.create_user {
                "no token (creating the test user failed)"
            } else {
                "no token (--no-create-user without --token)"
            };
            for name in [
                "list credentials",
                "store credential",
                "stored as ciphertext",
                "read back masked",
                "delete credential",
            ] {
                report.skip(name, reason)?;
            }
        }
    }

    report.record("ready", client.ready())?;

    if let (Some(_), Some(token)) = (created, &token) {
        let cleanup = client
            .call("DELETE", "/users/me", Some(token), None)
            .and_then(|answer| answer.expect(204));
        report.record("clean up test user", cleanup)?;
    }
    report.finish()
}

/// The credential checks, as the user of `token`. `created` is the id of the user this run
/// created (then the database is reachable and the stored row is inspected too).
async fn credential_checks(
    client: &Client,
    token: &SecretString,
    created: Option<UserId>,
    context: &mut Context<'_>,
    report: &mut Report<'_>,
) -> Result<(), CommandError> {
    let path = "/users/me/broker-credentials";
    let list = client
        .call("GET", path, Some(token), None)
        .and_then(|answer| {
            answer.expect(200)?;
            let body = answer.json()?;
            match (created, &body["credentials"]) {
                (Some(_), Value::Array(items)) if items.is_empty() => Ok(()),
                (Some(_), _) => Err(format!(
                    "expected {{\"credentials\": []}} for a new user, got {} entries",
                    body["credentials"].as_array().map_or(0, Vec::len)
                )),
                (None, Value::Array(_)) => Ok(()),
                (None, _) => Err("the answer has no \"credentials\" list".into()),
            }
        });
    let name = if created.is_some() {
        "new user has no credentials"
    } else {
        "list credentials"
    };
    report.record(name, list)?;

    let api_key = SecretString::from(format!("SmokeKey-{}", uuid::Uuid::new_v4().simple()));
    let api_secret = SecretString::from(format!("SmokeSecret-{}", uuid::Uuid::new_v4().simple()));
    let body = json!({"credentials": [{
        "broker": SMOKE_BROKER,
        "api_key": api_key.expose_secret(),
        "api_secret": api_secret.expose_secret(),
    }]});
    let stored = client
        .call("PUT", path, Some(token), Some(&body))
        .and_then(|answer| {
            answer.expect(200)?;
            answer.refuse_plaintext(&[&api_key, &api_secret])?;
            let body = answer.json()?;
            let entry = smoke_entry(&body)?;
            if entry["has_api_key"] == json!(true) && entry["has_api_secret"] == json!(true) {
                Ok(())
            } else {
                Err("the answer does not show both halves as stored".into())
            }
        });
    let delete_path = format!("{path}/{SMOKE_BROKER}");
    if !report.record("store credential", stored)? {
        // The write may have landed even though the answer was wrong (a plaintext in it, a
        // half missing): remove it so that no smoke row stays behind. 404 is fine here.
        let _ = client.call("DELETE", &delete_path, Some(token), None);
        report.skip("read back masked", "storing failed")?;
        return report.skip("delete credential", "storing failed");
    }

    match created {
        Some(user) => {
            report.record(
                "stored as ciphertext",
                stored_as_ciphertext(context, user, &[&api_key, &api_secret]).await,
            )?;
        }
        None => report.skip(
            "stored as ciphertext",
            "the table is read only for the test user a run creates (not with --token)",
        )?,
    }

    let read_back = client
        .call("GET", path, Some(token), None)
        .and_then(|answer| {
            answer.expect(200)?;
            answer.refuse_plaintext(&[&api_key, &api_secret])?;
            let body = answer.json()?;
            let entry = smoke_entry(&body)?;
            let expected = json!({
                "api_key_masked": mask(api_key.expose_secret()),
                "api_secret_masked": mask(api_secret.expose_secret()),
                "status": "ok",
            });
            let actual = json!({
                "api_key_masked": entry["api_key_masked"],
                "api_secret_masked": entry["api_secret_masked"],
                "status": entry["status"],
            });
            if actual == expected {
                Ok(())
            } else {
                // Masked values show four characters of a throw-away value: safe to name
                // which field differs, still not printed.
                let differing: Vec<&str> = ["api_key_masked", "api_secret_masked", "status"]
                    .into_iter()
                    .filter(|field| actual[field] != expected[field])
                    .collect();
                Err(format!(
                    "unexpected {} (status: {})",
                    differing.join(", "),
                    entry["status"]
                ))
            }
        });
    report.record("read back masked", read_back)?;

    let deleted = client
        .call("DELETE", &delete_path, Some(token), None)
        .and_then(|answer| answer.expect(204))
        .and_then(|()| client.call("GET", path, Some(token), None))
        .and_then(|answer| {
            answer.expect(200)?;
            match smoke_entry(&answer.json()?) {
                Ok(_) => Err("the credential is still listed after DELETE".into()),
                Err(_) => Ok(()),
            }
        });
    report.record("delete credential", deleted)?;
    Ok(())
}

/// Creates an active test user through `users create --print-token` (the very code operators
/// run) and returns its id and token.
async fn create_test_user(context: &mut Context<'_>) -> Result<(UserId, SecretString), String> {
    let email = format!(
        "smoke-test+{}@example.invalid",
        uuid::Uuid::new_v4().simple()
    );
    let mut output = zeroize::Zeroizing::new(Vec::new());
    super::users::create(context, &email, None, false, true, &mut *output)
        .await
        .map_err(|e| e.0)?;
    let text = std::str::from_utf8(&output).map_err(|_| "unexpected output".to_owned())?;
    let mut lines = text.lines();
    let id = lines
        .next()
        .and_then(UserId::parse_id)
        .ok_or("users create printed no user id")?;
    let token = lines
        .last()
        .map(|line| SecretString::from(line.trim().to_owned()))
        .ok_or("users create printed no token")?;
    Ok((id, token))
}

/// Reads the smoke row straight from the database: both halves must be Fernet tokens that do
/// not contain the values, with a key id and a binding tag.
async fn stored_as_ciphertext(
    context: &mut Context<'_>,
    user: UserId,
    values: &[&SecretString],
) -> Result<(), String> {
    let store = context
        .services()
        .await
        .map_err(|e| e.0)?
        .credential_store
        .clone();
    let broker = BrokerId::parse(SMOKE_BROKER).map_err(|e| e.to_string())?;
    let rows = store
        .list(user)
        .await
        .map_err(|e| user_service_domain::chain(&e))?;
    let row = rows
        .iter()
        .find(|row| row.broker == broker)
        .ok_or("no row in user_broker_credentials")?;
    for (column, token) in [
        ("api_key_encrypted", &row.api_key_encrypted),
        ("api_secret_encrypted", &row.api_secret_encrypted),
    ] {
        let token = token.as_deref().ok_or(format!("{column} is empty"))?;
        if values.iter().any(|v| token.contains(v.expose_secret())) {
            return Err(format!("{column} holds the value in clear"));
        }
        // A Fernet token is url-safe base64 of version byte 0x80 followed by a timestamp.
        if !token.starts_with("gAAAAA") {
            return Err(format!("{column} is not a Fernet token"));
        }
    }
    if row.key_id.is_none() {
        return Err("the row has no key_id".into());
    }
    if row.binding.is_none() {
        return Err("the row has no binding tag".into());
    }
    Ok(())
}

/// The entry of [`SMOKE_BROKER`] in a `{"credentials": [...]}` answer.
fn smoke_entry(body: &Value) -> Result<&Value, String> {
    body["credentials"]
        .as_array()
        .ok_or("the answer has no \"credentials\" list")?
        .iter()
        .find(|entry| entry["broker"] == json!(SMOKE_BROKER))
        .ok_or_else(|| format!("no {SMOKE_BROKER} entry in the answer"))
}

/// Plain HTTP (HTTPS with the `tls` feature) to the deployment.
struct Client {
    agent: ureq::Agent,
    base: String,
    request_id: String,
}

/// Status and body of an answer.
struct Answer {
    status: u16,
    text: String,
}

impl Client {
    fn new(base_url: &str) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(CALL_TIMEOUT))
            .build()
            .into();
        Self {
            agent,
            base: base_url.trim_end_matches('/').to_owned(),
            // One id for every call, so that the smoke run is easy to find in the access log.
            request_id: format!("smoke-{}", uuid::Uuid::new_v4().simple()),
        }
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&SecretString>,
        body: Option<&Value>,
    ) -> Result<Answer, String> {
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("X-Request-ID", &self.request_id);
        if let Some(token) = token {
            request = request.header("Authorization", format!("Bearer {}", token.expose_secret()));
        }
        let result = match body {
            Some(body) => request
                .header("Content-Type", "application/json")
                .body(body.to_string())
                .map_err(|e| e.to_string())
                .and_then(|r| self.agent.run(r).map_err(|e| e.to_string())),
            None => request
                .body(())
                .map_err(|e| e.to_string())
                .and_then(|r| self.agent.run(r).map_err(|e| e.to_string())),
        };
        let response = result.map_err(|e| format!("{method} {path}: {e}"))?;
        let status = response.status().as_u16();
        let text = response
            .into_body()
            .read_to_string()
            .map_err(|e| format!("{method} {path}: reading the answer: {e}"))?;
        Ok(Answer { status, text })
    }

    fn health(&self) -> Result<(), String> {
        let answer = self.call("GET", "/health", None, None)?;
        answer.expect(200)?;
        if answer.json()?["status"] == json!("ok") {
            Ok(())
        } else {
            Err("the answer is not {\"status\": \"ok\"}".into())
        }
    }

    fn ready(&self) -> Result<(), String> {
        let answer = self.call("GET", "/ready", None, None)?;
        if answer.status == 200 {
            return Ok(());
        }
        // `/ready` names its reasons and never a secret.
        let body = answer.json().unwrap_or(Value::Null);
        let field = |name: &str| body[name].as_str().unwrap_or("?").to_owned();
        Err(format!(
            "expected 200, got {} (database: {}, encryption_key: {}, rows_on_retired_keys: {})",
            answer.status,
            field("database"),
            field("encryption_key"),
            body["rows_on_retired_keys"]
        ))
    }
}

impl Answer {
    fn json(&self) -> Result<Value, String> {
        serde_json::from_str(&self.text).map_err(|_| "the answer is not JSON".to_owned())
    }

    /// `Ok` when the status is `expected`; otherwise a reason with the error's `detail` (the
    /// service's details never hold a secret).
    fn expect(&self, expected: u16) -> Result<(), String> {
        if self.status == expected {
            return Ok(());
        }
        let detail = self
            .json()
            .ok()
            .and_then(|body| body["detail"].as_str().map(str::to_owned));
        Err(match detail {
            Some(detail) => format!("expected {expected}, got {} ({detail})", self.status),
            None => format!("expected {expected}, got {}", self.status),
        })
    }

    /// Fails when the answer holds one of `values` in clear (no route returns plaintext: docs/contract.md#broker-credentials).
    fn refuse_plaintext(&self, values: &[&SecretString]) -> Result<(), String> {
        if values
            .iter()
            .any(|value| self.text.contains(value.expose_secret()))
        {
            Err("the answer holds a stored value in clear".into())
        } else {
            Ok(())
        }
    }
}

/// The lines written so far and the tally.
struct Report<'a> {
    out: &'a mut dyn Write,
    passed: usize,
    failed: usize,
    skipped: usize,
}

impl<'a> Report<'a> {
    fn new(out: &'a mut dyn Write) -> Self {
        Self {
            out,
            passed: 0,
            failed: 0,
            skipped: 0,
        }
    }

    /// Writes `PASS name` or `FAIL name: reason`; returns whether the check passed.
    fn record(&mut self, name: &str, result: Result<(), String>) -> Result<bool, CommandError> {
        let line = match &result {
            Ok(()) => {
                self.passed += 1;
                format!("PASS {name}")
            }
            Err(reason) => {
                self.failed += 1;
                format!("FAIL {name}: {reason}")
            }
        };
        self.write(&line)?;
        Ok(result.is_ok())
    }

    fn skip(&mut self, name: &str, reason: &str) -> Result<(), CommandError> {
        self.skipped += 1;
        self.write(&format!("SKIP {name}: {reason}"))
    }

    fn write(&mut self, line: &str) -> Result<(), CommandError> {
        writeln!(self.out, "{line}")
            .and_then(|()| self.out.flush())
            .map_err(|e| CommandError(e.to_string()))
    }

    /// The closing line; `Err` (non-zero exit) when a check failed.
    fn finish(self) -> Result<(), CommandError> {
        let total = self.passed + self.failed;
        let skipped = match self.skipped {
            0 => String::new(),
            n => format!(", {n} skipped"),
        };
        if self.failed == 0 {
            writeln!(self.out, "smoke: all {total} checks passed{skipped}")
                .map_err(|e| CommandError(e.to_string()))
        } else {
            Err(CommandError(format!(
                "smoke: {} of {total} checks failed{skipped}",
                self.failed
            )))
        }
    }
}
