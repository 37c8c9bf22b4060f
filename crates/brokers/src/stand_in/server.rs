//! The loopback HTTP/1.1 server under every stand-in: one thread accepts, one thread per
//! connection reads one request, asks the stand-in's handler for the answer, records it and
//! closes the connection.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::marker::PhantomData;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// Largest request head and body a stand-in reads, in bytes.
const MAX_HEAD_BYTES: u64 = 16 * 1024;
const MAX_BODY_BYTES: usize = 64 * 1024;
/// A client that stops sending is dropped after this long, so no connection thread lingers.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// What a stand-in did with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Authenticated and served.
    Accepted,
    /// Refused, with the broker's error code or message (`-1022`, `EAPI:Invalid nonce`, …).
    Refused(String),
}

impl Outcome {
    /// Whether the request was accepted.
    pub fn is_accepted(&self) -> bool {
        matches!(self, Self::Accepted)
    }
}

/// One request a stand-in answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// HTTP method.
    pub method: String,
    /// Path, without the query.
    pub path: String,
    /// What the stand-in did with it.
    pub outcome: Outcome,
}

/// A request as a stand-in reads it.
pub(crate) struct Request {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) query: String,
    headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Request {
    /// The first header called `name`, compared without case.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A stand-in's answer: JSON text and what to record.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: String,
    pub(crate) outcome: Outcome,
}

impl Answer {
    pub(crate) fn accepted(body: serde_json::Value) -> Self {
        Self {
            status: 200,
            body: body.to_string(),
            outcome: Outcome::Accepted,
        }
    }

    pub(crate) fn refused(status: u16, body: serde_json::Value, reason: impl Into<String>) -> Self {
        Self {
            status,
            body: body.to_string(),
            outcome: Outcome::Refused(reason.into()),
        }
    }
}

type Handler = dyn Fn(&Request) -> Answer + Send + Sync;

#[derive(Default)]
struct Shared {
    records: Mutex<Vec<Recorded>>,
    outage: Mutex<Option<u16>>,
}

/// The loopback HTTP server under every stand-in.
pub(crate) struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server").field("addr", &self.addr).finish()
    }
}

impl Server {
    pub(crate) fn start(handler: Arc<Handler>) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared::default());
        let accept = {
            let stop = Arc::clone(&stop);
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name(format!("stand-in-{}", addr.port()))
                .spawn(move || {
                    for stream in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(stream) = stream else { continue };
                        let handler = Arc::clone(&handler);
                        let shared = Arc::clone(&shared);
                        std::thread::spawn(move || serve(stream, &*handler, &shared));
                    }
                })?
        };
        Ok(Self {
            addr,
            stop,
            accept: Some(accept),
            shared,
        })
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub(crate) fn requests(&self) -> Vec<Recorded> {
        lock(&self.shared.records).clone()
    }

    pub(crate) fn set_outage(&self, status: Option<u16>) {
        *lock(&self.shared.outage) = status;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // The accept loop blocks in accept(): one connection wakes it up to see the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// A broker a [`StandIn`] plays: its state, built from the (key, secret) pairs it knows, and
/// how it answers a request.
pub(crate) trait Broker: Send + Sync + Sized + 'static {
    /// The stand-in's name in `Debug` output (`BinanceStandIn`, …).
    const STAND_IN: &'static str;

    /// The state of a stand-in that knows `keys` (key → secret).
    fn new(keys: HashMap<String, String>) -> io::Result<Self>;

    /// The answer to `request`.
    fn handle(&self, request: &Request) -> Answer;
}

/// A loopback stand-in for broker `B`: its server, and how many keys it knows.
pub struct StandIn<B> {
    server: Server,
    key_count: usize,
    broker: PhantomData<B>,
}

impl<B: Broker> fmt::Debug for StandIn<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(B::STAND_IN)
            .field("url", &self.server.url())
            .field("keys", &self.key_count)
            .finish()
    }
}

// `Broker` is the crate's own: only its stand-ins implement it, and a caller needs only `start`.
#[allow(private_bounds)]
impl<B: Broker> StandIn<B> {
    /// Starts a stand-in that knows these (key, secret) pairs.
    pub fn start<K, S>(keys: impl IntoIterator<Item = (K, S)>) -> io::Result<Self>
    where
        K: Into<String>,
        S: Into<String>,
    {
        let keys: HashMap<String, String> = keys
            .into_iter()
            .map(|(k, s)| (k.into(), s.into()))
            .collect();
        let key_count = keys.len();
        let broker = B::new(keys)?;
        Ok(Self {
            server: Server::start(Arc::new(move |request: &Request| broker.handle(request)))?,
            key_count,
            broker: PhantomData,
        })
    }

    /// Base URL, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Requests answered so far, oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        self.server.requests()
    }

    /// While `Some(status)`, every request is answered with that status and `{}`.
    pub fn set_outage(&self, status: Option<u16>) {
        self.server.set_outage(status);
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn serve(stream: TcpStream, handler: &Handler, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(CONNECTION_TIMEOUT));
    let _ = stream.set_write_timeout(Some(CONNECTION_TIMEOUT));
    let Ok(reader) = stream.try_clone() else {
        return;
    };
    let answer = match read_request(reader) {
        Ok(Some(request)) => {
            let answer = match *lock(&shared.outage) {
                Some(status) => {
                    Answer::refused(status, serde_json::json!({}), format!("outage {status}"))
                }
                None => handler(&request),
            };
            lock(&shared.records).push(Recorded {
                method: request.method,
                path: request.path,
                outcome: answer.outcome.clone(),
            });
            answer
        }
        // The connection closed before a request: the accept loop's wake-up or a client that
        // gave up.
        Ok(None) => return,
        Err(reason) => Answer::refused(400, serde_json::json!({}), reason),
    };
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{}",
        answer.status,
        reason_phrase(answer.status),
        answer.body.len(),
        answer.body
    );
    let _ = stream.flush();
}

fn read_request(stream: TcpStream) -> Result<Option<Request>, &'static str> {
    let mut reader = BufReader::new(stream);
    let mut budget = MAX_HEAD_BYTES;
    let mut line = String::new();
    match read_head_line(&mut reader, &mut budget, &mut line) {
        Ok(0) => return Ok(None),
        Ok(_) => {}
        Err(reason) => return Err(reason),
    }
    let mut parts = line.trim_end().splitn(3, ' ');
    let (Some(method), Some(target), Some(_version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err("malformed request line");
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if read_head_line(&mut reader, &mut budget, &mut line)? == 0 {
            return Err("truncated request head");
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err("malformed header");
        };
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let mut request = Request {
        method: method.to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        headers,
        body: String::new(),
    };
    let chunked = request
        .header("Transfer-Encoding")
        .is_some_and(|te| te.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        read_chunked(&mut reader)?
    } else {
        let length = match request.header("Content-Length") {
            Some(length) => length.parse::<usize>().map_err(|_| "bad Content-Length")?,
            None => 0,
        };
        if length > MAX_BODY_BYTES {
            return Err("body too large");
        }
        read_exactly(&mut reader, length)?
    };
    request.body = String::from_utf8(body).map_err(|_| "body is not UTF-8")?;
    Ok(Some(request))
}

fn read_exactly(reader: &mut BufReader<TcpStream>, length: usize) -> Result<Vec<u8>, &'static str> {
    let mut bytes = Vec::with_capacity(length);
    reader
        .by_ref()
        .take(u64::try_from(length).unwrap_or(0))
        .read_to_end(&mut bytes)
        .map_err(|_| "truncated body")?;
    if bytes.len() == length {
        Ok(bytes)
    } else {
        Err("truncated body")
    }
}

/// Reads a `Transfer-Encoding: chunked` body (HTTP clients use it for bodies of unknown length).
fn read_chunked(reader: &mut BufReader<TcpStream>) -> Result<Vec<u8>, &'static str> {
    let mut body = Vec::new();
    let mut budget = MAX_HEAD_BYTES;
    loop {
        let mut line = String::new();
        read_head_line(reader, &mut budget, &mut line)?;
        let size = line.trim_end().split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(size.trim(), 16).map_err(|_| "bad chunk size")?;
        if size == 0 {
            // Trailer lines, up to the empty line.
            loop {
                let mut trailer = String::new();
                if read_head_line(reader, &mut budget, &mut trailer)? == 0
                    || trailer.trim_end().is_empty()
                {
                    return Ok(body);
                }
            }
        }
        if body.len() + size > MAX_BODY_BYTES {
            return Err("body too large");
        }
        body.extend(read_exactly(reader, size)?);
        if read_exactly(reader, 2)? != b"\r\n" {
            return Err("bad chunk end");
        }
    }
}

/// Reads one line of the request head, within what is left of the head's byte budget.
fn read_head_line(
    reader: &mut BufReader<TcpStream>,
    budget: &mut u64,
    line: &mut String,
) -> Result<usize, &'static str> {
    let read = reader
        .by_ref()
        .take(*budget)
        .read_line(line)
        .map_err(|_| "unreadable request head")?;
    *budget -= u64::try_from(read).unwrap_or(u64::MAX).min(*budget);
    if read > 0 && !line.ends_with('\n') {
        return Err("request head too large");
    }
    Ok(read)
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}
