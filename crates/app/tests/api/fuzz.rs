//! Bad input never gets a 5xx (docs/contract.md#errors): every operation of the served OpenAPI document, plus
//! the embedded sign-in routes, is called with malformed bodies, wrong types in every field,
//! hostile path segments and query values. Every answer must be below 500, every error must be
//! JSON with a `detail`, no error may quote what was sent, and the server must still be healthy.

use serde_json::{json, Map, Value};

use crate::support::{Backend, TestServer};

/// A value no error message may repeat.
const MARKER: &str = "FUZZMARKER7Q";
/// The content type of every generated body but the deliberately wrong ones.
const JSON: &str = "application/json";

/// Replacement values for one field.
fn hostile_values() -> Vec<Value> {
    let mut deep = json!("x");
    for _ in 0..64 {
        deep = json!([deep]);
    }
    vec![
        Value::Null,
        json!(-1),
        json!(1e308),
        json!(9_223_372_036_854_775_807_i64),
        json!(""),
        json!("   "),
        json!(true),
        json!([]),
        json!({}),
        json!(format!("{MARKER}{}", "x".repeat(10_000))),
        json!(format!("{MARKER}\u{0000}\u{202e}é<script>' OR 1=1 --")),
        // Control characters inside values that are otherwise well-formed (an e-mail address,
        // a name), which pass every other check and reach the database.
        json!("nul\u{0000}fuzz@example.com"),
        json!("ctl\u{0007}\u{001b}[2J@example.com"),
        json!("Ann\u{0000}"),
        json!("line\r\nInjected: 1"),
        json!({"k": "a\u{0000}b", "\u{0000}": [1, "\u{0000}"], "n": 1e308}),
        deep,
    ]
}

/// Raw bodies that are not the JSON the route wants.
fn hostile_bodies() -> Vec<String> {
    vec![
        String::new(),
        "{".into(),
        "null".into(),
        "42".into(),
        format!("\"{MARKER}\""),
        "[]".into(),
        "{}".into(),
        format!("{{\"{MARKER}\": 1}}"),
        "\u{feff}{}".into(),
        format!("{{\"a\": \"{}\"}}", "y".repeat(70 * 1024)),
        "[".repeat(5000),
    ]
}

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let name = reference.rsplit('/').next().unwrap_or_default();
            &doc["components"]["schemas"][name]
        }
        None => schema,
    }
}

/// A plausible value for `schema` (every property present), the base the mutations start from.
fn skeleton(doc: &Value, schema: &Value, depth: usize) -> Value {
    let schema = resolve(doc, schema);
    if depth > 6 {
        return Value::Null;
    }
    if let Some(properties) = schema["properties"].as_object() {
        let object: Map<String, Value> = properties
            .iter()
            .map(|(name, property)| (name.clone(), skeleton(doc, property, depth + 1)))
            .collect();
        return Value::Object(object);
    }
    let kind = match &schema["type"] {
        Value::Array(kinds) => kinds.first().and_then(Value::as_str).unwrap_or("string"),
        Value::String(kind) => kind.as_str(),
        _ => "object",
    };
    match kind {
        "array" => json!([skeleton(doc, &schema["items"], depth + 1)]),
        "integer" | "number" => json!(1),
        "boolean" => json!(true),
        "object" => json!({}),
        _ => json!("binance"),
    }
}

/// Every JSON pointer of `value` (containers and leaves), the root excluded.
fn pointers(value: &Value, prefix: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let pointer = format!("{prefix}/{key}");
                out.push(pointer.clone());
                pointers(child, pointer, out);
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                let pointer = format!("{prefix}/{index}");
                out.push(pointer.clone());
                pointers(child, pointer, out);
            }
        }
        _ => {}
    }
}

/// The JSON bodies to send: the skeleton, then every field replaced by every hostile value.
fn json_bodies(doc: &Value, schema: &Value) -> Vec<Value> {
    let base = skeleton(doc, schema, 0);
    let mut paths = Vec::new();
    pointers(&base, String::new(), &mut paths);
    let mut bodies = vec![base.clone()];
    for pointer in paths {
        for value in hostile_values() {
            let mut body = base.clone();
            if let Some(slot) = body.pointer_mut(&pointer) {
                *slot = value;
                bodies.push(body);
            }
        }
    }
    bodies
}

const PATH_VALUES: [&str; 9] = [
    "0",
    "-1",
    "9223372036854775808",
    "abc",
    "%20",
    "%00",
    "a%2Fb",
    "%C3%A9%E2%80%AE",
    "FUZZMARKER7Qzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
];
const QUERY_VALUES: [&str; 6] = ["-1", "0", "abc", "99999999999999999999", "1.5", ""];

struct Call {
    method: String,
    path: String,
    body: Option<String>,
    content_type: &'static str,
}

fn check(
    server: &TestServer,
    token: &str,
    call: &Call,
    seen: &mut usize,
    failures: &mut Vec<String>,
) {
    let answer = match &call.body {
        Some(body) => server.call_raw(&call.method, &call.path, token, call.content_type, body),
        None => server.call_with(&call.method, &call.path, Some(token), None, &[]),
    };
    *seen += 1;
    let body: String = call
        .body
        .as_deref()
        .unwrap_or_default()
        .chars()
        .take(160)
        .collect();
    let what = format!("{} {} {body:?}", call.method, call.path);
    if answer.status >= 500 {
        failures.push(format!(
            "{what} answered {}: {}",
            answer.status, answer.text
        ));
    } else if answer.status >= 400 {
        let detail = answer.body["detail"].as_str().unwrap_or_default();
        if detail.is_empty() {
            failures.push(format!(
                "{what}: {} without a JSON detail: {}",
                answer.status, answer.text
            ));
        }
        if answer.text.contains(MARKER) {
            failures.push(format!(
                "{what}: the error quotes the input: {}",
                answer.text
            ));
        }
    }
}

fn bad_input_never_gets_a_5xx(backend: Backend) {
    let Some(server) = TestServer::start(
        backend,
        &[
            ("BROKER_PROBE_BINANCE_URL", Some("http://127.0.0.1:9")),
            ("BROKER_PROBE_KRAKEN_URL", Some("http://127.0.0.1:9")),
            ("BROKER_PROBE_ALPACA_URL", Some("http://127.0.0.1:9")),
            ("BROKER_PROBE_TIMEOUT_SECS", Some("1")),
        ],
    ) else {
        return;
    };
    let (victim, _) = server.user("victim@example.com", false);
    let (_, operator) = server.user("fuzz-operator@example.com", true);
    let doc = server.call("GET", "/openapi.json", None, None).body;
    let mut operations: Vec<(String, String, Option<Value>)> = Vec::new();
    for (path, methods) in doc["paths"].as_object().unwrap() {
        for (method, operation) in methods.as_object().unwrap() {
            let schema = operation["requestBody"]["content"]["application/json"]["schema"].clone();
            operations.push((
                method.to_uppercase(),
                path.clone(),
                (!schema.is_null()).then_some(schema),
            ));
        }
    }
    // The embedded sign-in routes (served outside the OpenAPI document).
    let credentials = json!({"type": "object", "properties": {"email": {"type": "string"}, "password": {"type": "string"}}});
    let refresh = json!({"type": "object", "properties": {"refresh_token": {"type": "string"}}});
    operations.push((
        "POST".into(),
        "/auth/register".into(),
        Some(credentials.clone()),
    ));
    operations.push(("POST".into(), "/auth/login".into(), Some(credentials)));
    operations.push(("POST".into(), "/auth/refresh".into(), Some(refresh)));
    operations.push(("GET".into(), "/auth/me".into(), None));
    // Deleting comes last, so that the operator survives until then.
    operations
        .sort_by_key(|(method, path, _)| (method == "DELETE", path.contains("/me"), path.clone()));
    assert!(
        operations.len() >= 30,
        "the document lists {} operations",
        operations.len()
    );

    let mut seen = 0;
    let mut failures = Vec::new();
    for (method, template, schema) in &operations {
        // Path parameters: a real id, then hostile segments (one parameter at a time).
        let concrete = template
            .replace("{user_id}", &victim.to_string())
            .replace("{broker}", "binance")
            .replace("{step}", "api-keys");
        let mut paths = vec![concrete.clone()];
        for placeholder in ["{user_id}", "{broker}", "{step}"] {
            if template.contains(placeholder) {
                for value in PATH_VALUES {
                    let path = template
                        .replace(placeholder, value)
                        .replace("{user_id}", &victim.to_string())
                        .replace("{broker}", "binance")
                        .replace("{step}", "api-keys");
                    paths.push(path);
                }
            }
        }
        if doc["paths"][template][method.to_lowercase()]["parameters"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["in"] == "query"))
        {
            for name in ["limit", "offset"] {
                for value in QUERY_VALUES {
                    paths.push(format!("{concrete}?{name}={value}"));
                }
            }
            paths.push(format!("{concrete}?limit=1&limit=2&unknown={MARKER}"));
        }
        let mut send = |path: &str, body: Option<String>, content_type: &'static str| {
            let call = Call {
                method: method.clone(),
                path: path.to_owned(),
                body,
                content_type,
            };
            check(&server, &operator, &call, &mut seen, &mut failures);
        };
        for path in &paths {
            send(path, schema.as_ref().map(|_| "{}".to_owned()), JSON);
        }
        let Some(schema) = schema else { continue };
        let bodies = json_bodies(&doc, schema).into_iter().map(|b| b.to_string());
        for body in bodies.chain(hostile_bodies()) {
            send(&concrete, Some(body), JSON);
        }
        for content_type in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "application/json; charset=latin1",
            "multipart/form-data; boundary=x",
        ] {
            send(
                &concrete,
                Some("{\"credentials\": []}".into()),
                content_type,
            );
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {seen} calls went wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(seen > 1000, "only {seen} calls were made");
    assert_eq!(server.call("GET", "/health", None, None).status, 200);
    server.output_with("GET /health 200");
    assert!(!server.output().contains("panicked"), "a handler panicked");
}

crate::test_on_both_backends!(bad_input_never_gets_a_5xx,);
