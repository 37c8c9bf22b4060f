//! Shared fixtures: a one-request loopback HTTP server, a secret value and a token, and the
//! check that printed text leaks neither.

#![allow(dead_code)] // each provider's tests use part of it, and a build may have no provider

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread;
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use user_service_domain::ports::{SecretSource, SecretSourceError};

/// The secret the fake servers hold.
pub const SECRET_VALUE: &str = "kq7Zr2Lw9Xp4Vt6NbJ3m";
/// The token the clients present.
pub const TOKEN: &str = "hvs.Qm3Jx8Rb5Yc1Hd0FgW2s";

/// What `source` answers for `name`, exposed, after checking that it calls itself `provider`.
pub fn fetch_from(
    source: &dyn SecretSource,
    provider: &str,
    name: &str,
) -> Result<Option<String>, SecretSourceError> {
    assert_eq!(source.provider(), provider);
    source
        .fetch(name)
        .map(|secret| secret.map(|s| s.expose_secret().to_owned()))
}

/// `error`, checked to name `provider` and to leak neither the value nor the token.
pub fn checked_error(error: SecretSourceError, provider: &str) -> SecretSourceError {
    assert_eq!(error.provider, provider);
    assert_leaks_nothing(&error.to_string());
    assert_leaks_nothing(&format!("{error:?}"));
    error
}

/// Fetches from a server that answers only after 2 s, through `fetch_error` given that server and
/// a 200 ms timeout; checks that the fetch gave up in time, saying so, and returns the server.
pub fn fetch_from_a_stalling_server(
    fetch_error: impl FnOnce(&Server, Duration) -> SecretSourceError,
) -> Server {
    let server = Server::stalling(Duration::from_secs(2));
    let started = Instant::now();
    let error = fetch_error(&server, Duration::from_millis(200));
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_millis(1500), "took {elapsed:?}");
    assert!(error.reason.contains("no answer within 200 ms"), "{error}");
    server
}

/// Fails when `printed` contains any 8-character window of `secret`.
pub fn assert_no_window_of(secret: &str, printed: &str) {
    let chars: Vec<char> = secret.chars().collect();
    for window in chars.windows(8) {
        let window: String = window.iter().collect();
        assert!(
            !printed.contains(&window),
            "{printed:?} contains {window:?} of a secret"
        );
    }
}

/// Fails when `printed` shows any part of [`SECRET_VALUE`] or [`TOKEN`].
pub fn assert_leaks_nothing(printed: &str) {
    assert_no_window_of(SECRET_VALUE, printed);
    assert_no_window_of(TOKEN, printed);
}

/// A request as the server received it.
#[derive(Debug)]
pub struct Request {
    /// `GET`, …
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query parameters, decoded, in order.
    pub query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
}

impl Request {
    /// The value of the header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// A server on `127.0.0.1:<free port>` that accepts one connection, records its request and
/// answers once. Dropping it releases a stalled answer.
pub struct Server {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    requests: Receiver<Request>,
    _release: Sender<()>,
}

impl Server {
    /// Answers `status` with the JSON `body`.
    pub fn answering(status: u16, body: &str) -> Self {
        Self::start(status, body.to_owned(), None)
    }

    /// Answers `status` with the JSON `body` and one extra header.
    pub fn answering_with_header(status: u16, body: &str, header: &str) -> Self {
        Self::start_with(status, format!("{header}\r\n"), body.to_owned(), None)
    }

    /// Receives the request, then waits `stall` (or until dropped) before answering.
    pub fn stalling(stall: Duration) -> Self {
        Self::start(200, "{}".to_owned(), Some(stall))
    }

    /// The request the server received (waits up to 5 s for it).
    pub fn request(&self) -> Request {
        self.requests
            .recv_timeout(Duration::from_secs(5))
            .expect("the server received no request")
    }

    fn start(status: u16, body: String, stall: Option<Duration>) -> Self {
        Self::start_with(status, String::new(), body, stall)
    }

    fn start_with(status: u16, extra: String, body: String, stall: Option<Duration>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let url = format!("http://{}", listener.local_addr().expect("local address"));
        let (requests_tx, requests) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        thread::spawn(move || {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            let Some(request) = read_request(&stream) else {
                return;
            };
            let _ = requests_tx.send(request);
            if let Some(stall) = stall {
                // Returns early when the test drops the server (the sender disconnects).
                let _ = released.recv_timeout(stall);
            }
            let _ = write_response(stream, status, &extra, &body);
            // The listener is dropped here: a second connection (a retry, a followed
            // redirect) is refused.
        });
        Self {
            url,
            requests,
            _release: release,
        }
    }
}

/// A port on which nothing listens.
pub fn closed_port_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let url = format!("http://{}", listener.local_addr().expect("local address"));
    drop(listener);
    url
}

fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let target = parts.next()?.to_owned();
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end_matches(['\r', '\n']);
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let query = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(name), decode(value))
        })
        .collect();
    Some(Request {
        method,
        path: path.to_owned(),
        query,
        headers,
    })
}

/// Decodes `application/x-www-form-urlencoded` text (`%XX` and `+`).
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("ascii");
                out.push(u8::from_str_radix(hex, 16).expect("hex escape"));
                i += 2;
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8(out).expect("utf-8 query")
}

fn write_response(
    mut stream: TcpStream,
    status: u16,
    extra_headers: &str,
    body: &str,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        307 => "Temporary Redirect",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    };
    write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n{extra_headers}\r\n{body}",
        body.len()
    )?;
    stream.flush()
}
