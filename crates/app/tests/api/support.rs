//! Starts the service against a fresh database, as a process of the real binary or inside the
//! test process, and talks to it over HTTP.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
pub use user_service_test_support::db::Backend;
use user_service_test_support::db::ScratchDatabase;

/// A valid Fernet key used by the tests (never a production key).
pub const TEST_KEY: &str = "t4excE-aoy-3pkbPitYkA1IpxEKdxR-wo9OPw9x_iRA=";
/// A second valid key.
pub const OTHER_KEY: &str = "0cH2q7LsiVj6xNOclUfRIMo9DtTjwuMCmMN98rt0XHE=";
/// The JWT secret the spawned servers use.
pub const JWT_SECRET: &str = "test-jwt-secret-that-is-long-enough-0123456789";

/// A database for one test ([`ScratchDatabase`]: a SQLite file in a temporary directory, or a
/// PostgreSQL database dropped afterwards), with the queries the HTTP tests make on it.
#[derive(Debug)]
pub struct TestDatabase(ScratchDatabase);

impl std::ops::Deref for TestDatabase {
    type Target = ScratchDatabase;

    fn deref(&self) -> &ScratchDatabase {
        &self.0
    }
}

impl TestDatabase {
    /// A fresh database, or `None` (with a loud message) when PostgreSQL is unreachable outside
    /// CI. Under `CI=true` an unreachable PostgreSQL fails the test.
    pub fn create(backend: Backend) -> Option<Self> {
        ScratchDatabase::create(backend).map(Self)
    }

    /// Another handle on the same database (the original keeps ownership and drops it).
    pub fn alias(&self) -> Self {
        Self(self.0.alias())
    }

    /// Counts rows matching a SQL condition on `user_broker_credentials`.
    pub fn count_credentials(&self, condition: &str) -> i64 {
        self.count_rows("user_broker_credentials", condition)
    }

    /// Runs a query and returns the rows as JSON objects (column → text value).
    pub fn credential_rows(&self) -> Vec<(i64, String, Option<String>, Option<String>)> {
        use diesel::sql_types::{BigInt, Nullable, Text};
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = BigInt)]
            user_id: i64,
            #[diesel(sql_type = Text)]
            broker: String,
            #[diesel(sql_type = Nullable<Text>)]
            api_key_encrypted: Option<String>,
            #[diesel(sql_type = Nullable<Text>)]
            api_secret_encrypted: Option<String>,
        }
        let query = "SELECT CAST(user_id AS BIGINT) AS user_id, broker, api_key_encrypted, \
                     api_secret_encrypted FROM user_broker_credentials ORDER BY user_id, broker";
        let rows: Vec<Row> = self.load(query);
        rows.into_iter()
            .map(|r| {
                (
                    r.user_id,
                    r.broker,
                    r.api_key_encrypted,
                    r.api_secret_encrypted,
                )
            })
            .collect()
    }

    /// `(broker, key_id)` of every credential row, ordered by user and broker.
    pub fn credential_key_ids(&self) -> Vec<(String, String)> {
        use diesel::sql_types::{Nullable, Text};
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = Text)]
            broker: String,
            #[diesel(sql_type = Nullable<Text>)]
            key_id: Option<String>,
        }
        let query = "SELECT broker, key_id FROM user_broker_credentials ORDER BY user_id, broker";
        let rows: Vec<Row> = self.load(query);
        rows.into_iter()
            .map(|r| (r.broker, r.key_id.unwrap_or_default()))
            .collect()
    }

    /// The stored columns of one credential row: `(api_key_encrypted, api_secret_encrypted,
    /// key_id, binding, version)`, all as text.
    pub fn credential_row(&self, user: i64, broker: &str) -> [Option<String>; 5] {
        use diesel::sql_types::{Nullable, Text};
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = Nullable<Text>)]
            k: Option<String>,
            #[diesel(sql_type = Nullable<Text>)]
            s: Option<String>,
            #[diesel(sql_type = Nullable<Text>)]
            key_id: Option<String>,
            #[diesel(sql_type = Nullable<Text>)]
            binding: Option<String>,
            #[diesel(sql_type = Nullable<Text>)]
            version: Option<String>,
        }
        let query = format!(
            "SELECT api_key_encrypted AS k, api_secret_encrypted AS s, key_id, binding, \
             CAST(version AS TEXT) AS version FROM user_broker_credentials \
             WHERE user_id = {user} AND broker = '{broker}'"
        );
        let mut rows: Vec<Row> = self.load(&query);
        let r = rows
            .pop()
            .unwrap_or_else(|| panic!("no row {user}/{broker}"));
        [r.k, r.s, r.key_id, r.binding, r.version]
    }
}

/// Overrides that start the service without an encryption key, and without requiring one: the
/// credential routes answer 503 while the rest works.
pub const WITHOUT_KEY: [(&str, Option<&str>); 2] = [
    ("BROKER_CREDENTIALS_ENCRYPTION_KEY", None),
    ("BROKER_CREDENTIALS_KEY_REQUIRED", Some("0")),
];

/// The environment every spawned process gets, before per-test overrides.
fn base_env(db: &TestDatabase) -> Vec<(String, String)> {
    [
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("APP_ENV", "production"),
        ("RUN_MIGRATIONS", "1"),
        ("RUST_LOG", "info"),
        ("LOG_FORMAT", "text"),
        ("BROKER_CREDENTIALS_ENCRYPTION_KEY", TEST_KEY),
        ("JWT_SECRET", JWT_SECRET),
        ("WORKERS", "2"),
        ("DATABASE_POOL_SIZE", "4"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .chain([("DATABASE_URL".to_owned(), db.url.clone())])
    .collect()
}

fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_user-service"))
}

/// A running server: a process of the real binary ([`TestServer::start`]: signals, start-up
/// failures, log lines), or the same application served inside the test process
/// ([`TestServer::spawn_app`]: cheaper, for tests of HTTP behaviour). Both talk HTTP and run the
/// CLI the same way.
pub struct TestServer {
    pub base: String,
    pub db: TestDatabase,
    env: Vec<(String, String)>,
    process: Process,
    agent: ureq::Agent,
}

/// Where the server runs.
enum Process {
    /// A child process and everything it printed.
    Child {
        child: Child,
        output: Arc<Mutex<Vec<String>>>,
    },
    /// An actix system on a thread of the test process.
    InProcess {
        handle: actix_web::dev::ServerHandle,
        thread: Option<std::thread::JoinHandle<()>>,
    },
}

/// The base environment plus `overrides` (a value of `None` removes the variable).
fn environment(db: &TestDatabase, overrides: &[(&str, Option<&str>)]) -> Vec<(String, String)> {
    let mut env = base_env(db);
    for (name, value) in overrides {
        env.retain(|(n, _)| n != name);
        if let Some(value) = value {
            env.push(((*name).to_owned(), (*value).to_owned()));
        }
    }
    env
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// An answer: status, headers of interest, JSON body (or `Value::Null`).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub text: String,
    pub headers: Vec<(String, String)>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn detail(&self) -> &str {
        self.body["detail"].as_str().unwrap_or_default()
    }
}

impl TestServer {
    /// Starts a server on `backend` with the base environment plus `overrides` (a value of
    /// `None` removes the variable). `None` when the backend is unavailable outside CI.
    pub fn start(backend: Backend, overrides: &[(&str, Option<&str>)]) -> Option<Self> {
        let db = TestDatabase::create(backend)?;
        Some(Self::start_on(db, overrides).expect("server starts"))
    }

    /// Serves the application inside the test process (`startup::build_state` and
    /// `Application::build`, as `main` does) on `backend`, with the base environment plus
    /// `overrides`. No log is captured and no signal reaches it: tests of those use [`Self::start`].
    pub fn spawn_app(backend: Backend, overrides: &[(&str, Option<&str>)]) -> Option<Self> {
        let db = TestDatabase::create(backend)?;
        let env = environment(&db, overrides);
        let settings = user_service::config::Settings::load_from(env.clone().into_iter())
            .expect("valid settings");
        // The secrets come from the test's variables, not from the process environment that
        // every test of the binary shares.
        let secrets = user_service::config::load_from(
            &settings,
            &user_service_secrets::Variables::from_pairs(env.clone()),
        );
        let (started, port) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let state = user_service::startup::build_state_with(settings, secrets)
                    .await
                    .expect("the application starts");
                let app = user_service::startup::Application::build(state).expect("bind");
                started
                    .send((app.port, app.handle()))
                    .expect("the test waits");
                app.run().await.expect("serve");
            });
        });
        let (port, handle) = port.recv().expect("the application started");
        Some(Self {
            base: format!("http://127.0.0.1:{port}"),
            db,
            env,
            process: Process::InProcess {
                handle,
                thread: Some(thread),
            },
            agent: agent(),
        })
    }

    /// The child process and its output; panics for an in-process server.
    fn child(&self) -> (&Child, &Arc<Mutex<Vec<String>>>) {
        match &self.process {
            Process::Child { child, output } => (child, output),
            Process::InProcess { .. } => {
                panic!("this test needs a server process: start it with TestServer::start")
            }
        }
    }

    /// Starts a server on an existing database; `Err` with the output when it exits instead.
    pub fn start_on(db: TestDatabase, overrides: &[(&str, Option<&str>)]) -> Result<Self, String> {
        let env = environment(&db, overrides);
        let mut child = Command::new(binary())
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn user-service");
        let output = Arc::new(Mutex::new(Vec::new()));
        let (port_tx, port_rx) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let output = Arc::clone(&output);
            let port_tx = port_tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Some(rest) = line.split("listening on http://").nth(1) {
                        let port = rest
                            .rsplit(':')
                            .next()
                            .and_then(|p| p.trim().parse::<u16>().ok());
                        let _ = port_tx.send(port);
                    }
                    output.lock().unwrap().push(line);
                }
                let _ = port_tx.send(None);
            });
        }
        drop(port_tx);
        let agent = agent();
        // The server prints its port once bound; both streams closing means it exited.
        let mut closed = 0;
        loop {
            match port_rx.recv_timeout(Duration::from_secs(60)) {
                Ok(Some(port)) => {
                    return Ok(Self {
                        base: format!("http://127.0.0.1:{port}"),
                        db,
                        env,
                        process: Process::Child { child, output },
                        agent,
                    })
                }
                Ok(None) => {
                    closed += 1;
                    if closed == 2 {
                        let _ = child.wait();
                        return Err(output.lock().unwrap().join("\n"));
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    return Err(format!(
                        "server did not start:\n{}",
                        output.lock().unwrap().join("\n")
                    ));
                }
            }
        }
    }

    /// Sends `SIGHUP` to the server process (key reload).
    pub fn hang_up(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.child().0.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -HUP failed");
    }

    /// How many lines printed so far contain `needle`.
    pub fn count_lines(&self, needle: &str) -> usize {
        self.child()
            .1
            .lock()
            .unwrap()
            .iter()
            .filter(|line| line.contains(needle))
            .count()
    }

    /// Waits (at most 10 s) until `count` lines containing `needle` have been printed.
    pub fn wait_lines(&self, needle: &str, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.count_lines(needle) < count {
            assert!(
                Instant::now() < deadline,
                "fewer than {count} lines containing {needle:?} in:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Everything the process printed so far.
    pub fn output(&self) -> String {
        self.child().1.lock().unwrap().join("\n")
    }

    /// Everything the process printed, once a line containing `needle` has arrived (the reader
    /// threads may lag behind the answer the test just received). Panics after 10 s.
    pub fn output_with(&self, needle: &str) -> String {
        self.wait_lines(needle, 1);
        self.output()
    }

    /// A command of the same binary with the server's environment (migrations off: the server
    /// applied them) plus `overrides`.
    fn command(&self, args: &[&str], overrides: &[(&str, &str)]) -> Command {
        let mut command = Command::new(binary());
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("RUN_MIGRATIONS", "0")
            .envs(overrides.iter().copied());
        command
    }

    /// Runs a command of the same binary with the server's environment; returns stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = self.command(args, &[]).output().expect("run user-service");
        assert!(
            out.status.success(),
            "user-service {args:?} failed ({}): {}\nstdout: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    }

    /// Runs a command of the same binary with the server's environment plus `overrides`;
    /// returns the whole output, whatever the exit status.
    pub fn cli_with(&self, args: &[&str], overrides: &[(&str, &str)]) -> std::process::Output {
        self.command(args, overrides)
            .output()
            .expect("run user-service")
    }

    /// Runs a command of the same binary with the server's environment, `input` on its standard
    /// input; returns the whole output, whatever the exit status.
    pub fn cli_with_input(&self, args: &[&str], input: &str) -> std::process::Output {
        use std::io::Write;
        let mut child = self
            .command(args, &[])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn user-service");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("run user-service")
    }

    /// Spawns a command of the same binary (for tests that kill it).
    pub fn spawn_cli(&self, args: &[&str], overrides: &[(&str, &str)]) -> Child {
        self.command(args, overrides)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn user-service")
    }

    /// Creates a user through the command line; returns (id, access token).
    pub fn user(&self, email: &str, operator: bool) -> (i64, String) {
        let mut args = vec!["users", "create", "--email", email, "--print-token"];
        if operator {
            args.push("--operator");
        }
        let out = self.cli(&args);
        let mut lines = out.lines();
        let id = lines
            .next()
            .and_then(|l| l.trim().parse().ok())
            .expect("user id");
        let token = lines.last().expect("token").trim().to_owned();
        (id, token)
    }

    /// `PUT /users/me/broker-credentials` with `entries` as the `credentials` list.
    pub fn put_credentials(&self, token: &str, entries: Value) -> Answer {
        self.call(
            "PUT",
            "/users/me/broker-credentials",
            Some(token),
            Some(serde_json::json!({ "credentials": entries })),
        )
    }

    /// Two users, `a` and `b`, each with a Binance key and secret stored (`a-key-1111` /
    /// `a-secret-1111`, `b-key-2222` / `b-secret-2222`): the victim and the owner of a row
    /// someone moves. Their ids and tokens.
    pub fn two_binance_traders(&self, a: &str, b: &str) -> ((i64, String), (i64, String)) {
        let mut traders = Vec::new();
        for (email, tag, digits) in [(a, "a", "1111"), (b, "b", "2222")] {
            let (id, token) = self.user(email, false);
            let stored = self.put_credentials(
                &token,
                serde_json::json!([{
                    "broker": "binance",
                    "api_key": format!("{tag}-key-{digits}"),
                    "api_secret": format!("{tag}-secret-{digits}"),
                }]),
            );
            assert_eq!(stored.status, 200, "{}", stored.text);
            traders.push((id, token));
        }
        let b = traders.pop().expect("two");
        (traders.pop().expect("two"), b)
    }

    /// Sends a request; `body` is sent as JSON when given.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        self.call_with(method, path, token, body, &[])
    }

    /// Sends a request with extra headers.
    pub fn call_with(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let url = format!("{}{}", self.base, path);
        let mut builder = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(token) = token {
            builder = builder.header("Authorization", format!("Bearer {token}"));
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let response = match body {
            Some(body) => {
                let has_type = headers
                    .iter()
                    .any(|(n, _)| n.eq_ignore_ascii_case("content-type"));
                if !has_type {
                    builder = builder.header("Content-Type", "application/json");
                }
                let request = builder.body(body.to_string()).expect("request");
                self.agent.run(request)
            }
            None => self.agent.run(builder.body(()).expect("request")),
        }
        .expect("HTTP request");
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_owned()))
            .collect();
        let text = response.into_body().read_to_string().unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            body,
            text,
            headers,
        }
    }

    /// Sends a raw body with a given content type.
    pub fn call_raw(
        &self,
        method: &str,
        path: &str,
        token: &str,
        content_type: &str,
        body: &str,
    ) -> Answer {
        let url = format!("{}{}", self.base, path);
        let request = ureq::http::Request::builder()
            .method(method)
            .uri(&url)
            .header("Authorization", format!("Bearer {token}"))
            .header("Content-Type", content_type)
            .body(body.to_owned())
            .expect("request");
        let response = self.agent.run(request).expect("HTTP request");
        let status = response.status().as_u16();
        let text = response.into_body().read_to_string().unwrap_or_default();
        Answer {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
            headers: Vec::new(),
        }
    }

    /// Sends a JSON `POST` from another loopback address (`127.0.0.2`, say) than the usual
    /// `127.0.0.1`, as a client elsewhere would; returns the status and the body.
    pub fn post_from(&self, source: std::net::Ipv4Addr, path: &str, body: &Value) -> (u16, Value) {
        use std::io::{Read, Write};
        let address: std::net::SocketAddr = self
            .base
            .trim_start_matches("http://")
            .parse()
            .expect("server address");
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        socket
            .bind(&std::net::SocketAddr::from((source, 0)).into())
            .expect("bind the source address");
        socket.connect(&address.into()).expect("connect");
        let mut stream: std::net::TcpStream = socket.into();
        let body = body.to_string();
        write!(
            stream,
            "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .expect("send");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("read");
        let status = answer
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status line");
        let json = answer
            .split_once("\r\n\r\n")
            .and_then(|(_, rest)| serde_json::from_str(rest).ok())
            .unwrap_or(Value::Null);
        (status, json)
    }

    /// Stops the server (SIGKILL is fine: every test's writes are acknowledged first).
    pub fn stop(&mut self) {
        match &mut self.process {
            Process::Child { child, .. } => {
                let _ = child.kill();
                let _ = child.wait();
            }
            Process::InProcess { handle, thread } => {
                // Not graceful: nothing is in flight once the test is done.
                let stopped = handle.stop(false);
                actix_web::rt::System::new().block_on(stopped);
                if let Some(thread) = thread.take() {
                    let _ = thread.join();
                }
            }
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Declares, for each plain function `name(backend: Backend)`, one test per backend:
/// `name::sqlite` and `name::postgres`. The bodies stay ordinary functions that rustfmt formats.
#[macro_export]
macro_rules! test_on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn sqlite() {
                    super::$name($crate::support::Backend::Sqlite)
                }
                #[test]
                fn postgres() {
                    super::$name($crate::support::Backend::Postgres)
                }
            }
        )*
    };
}
