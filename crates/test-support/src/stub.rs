//! A loopback HTTP/1.1 server that answers what a closure decides and keeps what it received:
//! the secret managers, the entitlements service, user-service itself or a broker, as the code
//! under test sees them. std only; one connection at a time, each closed after its answer.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// A request as the stub received it.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path and query, as sent.
    pub target: String,
    /// The headers, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body (`Content-Length` bytes), as text.
    pub body: String,
}

impl Request {
    /// The value of the header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.target
            .split_once('?')
            .map_or(&self.target, |(path, _)| path)
    }

    /// The query parameters, decoded (`%XX` and `+`), in order.
    pub fn query(&self) -> Vec<(String, String)> {
        let query = self.target.split_once('?').map_or("", |(_, query)| query);
        query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                (decode(name), decode(value))
            })
            .collect()
    }
}

/// What the stub answers to one request.
#[derive(Debug, Clone)]
pub struct Reply {
    status: u16,
    body: String,
    headers: Vec<String>,
    stall: Option<Duration>,
}

impl Reply {
    /// `status` with the JSON `body`.
    pub fn json(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            body: body.into(),
            headers: Vec::new(),
            stall: None,
        }
    }

    /// The same with one more header line (`Location: http://…`).
    pub fn with_header(mut self, line: impl Into<String>) -> Self {
        self.headers.push(line.into());
        self
    }

    /// The same, sent only after `stall` (or as soon as the stub is dropped).
    pub fn after(mut self, stall: Duration) -> Self {
        self.stall = Some(stall);
        self
    }
}

type Handler = dyn Fn(&Request) -> Reply + Send + Sync;

/// A running stub on `127.0.0.1:<free port>`; stops when dropped.
pub struct Stub {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    received: Arc<Mutex<Vec<Request>>>,
    arrivals: Mutex<Receiver<()>>,
    stop: Arc<AtomicBool>,
    release: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Stub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stub").field("url", &self.url).finish()
    }
}

impl Stub {
    /// Answers each request with the `(status, JSON body)` `answer` decides.
    pub fn start(answer: impl Fn(&Request) -> (u16, String) + Send + Sync + 'static) -> Self {
        Self::serve(move |request| {
            let (status, body) = answer(request);
            Reply::json(status, body)
        })
    }

    /// Answers every request with `status` and the JSON `body`.
    pub fn answering(status: u16, body: &str) -> Self {
        let body = body.to_owned();
        Self::start(move |_| (status, body.clone()))
    }

    /// Answers `status` with the JSON `body` and one more header line.
    pub fn answering_with_header(status: u16, body: &str, header: &str) -> Self {
        let reply = Reply::json(status, body).with_header(header);
        Self::serve(move |_| reply.clone())
    }

    /// Receives each request, then waits `stall` (or until dropped) before answering `{}`.
    pub fn stalling(stall: Duration) -> Self {
        Self::serve(move |_| Reply::json(200, "{}").after(stall))
    }

    /// Answers each request with the [`Reply`] `reply` decides.
    pub fn serve(reply: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let url = format!("http://{}", listener.local_addr().expect("local address"));
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (arrived, arrivals) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        let reply: Arc<Handler> = Arc::new(reply);
        let thread = {
            let (received, stop) = (Arc::clone(&received), Arc::clone(&stop));
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let Some(request) = read_request(&stream) else {
                        continue;
                    };
                    let answer = reply(&request);
                    received.lock().expect("lock").push(request);
                    let _ = arrived.send(());
                    if let Some(stall) = answer.stall {
                        // Returns early when the stub is dropped (the sender disconnects).
                        let _ = released.recv_timeout(stall);
                    }
                    let _ = write_reply(stream, &answer);
                }
            })
        };
        Self {
            url,
            received,
            arrivals: Mutex::new(arrivals),
            stop,
            release: Some(release),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.received.lock().expect("lock").clone()
    }

    /// The first request (waits up to 5 s for it).
    pub fn request(&self) -> Request {
        if self.requests().is_empty() {
            let arrivals = self.arrivals.lock().expect("lock");
            arrivals
                .recv_timeout(Duration::from_secs(5))
                .expect("the stub received no request");
        }
        self.requests().remove(0)
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Releases a stalled answer, then wakes the accept loop so that it sees the flag.
        drop(self.release.take());
        let _ = TcpStream::connect(self.url.trim_start_matches("http://"));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A loopback URL on which nothing listens.
pub fn closed_port_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let url = format!("http://{}", listener.local_addr().expect("local address"));
    drop(listener);
    url
}

fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
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
    let length: usize = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        target,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn write_reply(mut stream: TcpStream, reply: &Reply) -> std::io::Result<()> {
    let reason = match reply.status {
        200 => "OK",
        307 => "Temporary Redirect",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let mut head = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reply.body.len()
    );
    for line in &reply.headers {
        head.push_str(line);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(reply.body.as_bytes())?;
    stream.flush()
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
                let value = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok());
                match value {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_is_decoded_in_order() {
        let request = Request {
            method: "GET".into(),
            target: "/v1/x?name=A%26B%3DC+D&empty=&flag".into(),
            headers: vec![("X-Vault-Token".into(), "t".into())],
            body: String::new(),
        };
        assert_eq!(request.path(), "/v1/x");
        assert_eq!(
            request.query(),
            [
                ("name".to_owned(), "A&B=C D".to_owned()),
                ("empty".to_owned(), String::new()),
                ("flag".to_owned(), String::new()),
            ]
        );
        assert_eq!(request.header("x-vault-token"), Some("t"));
    }
}
