//! A loopback HTTP/1.1 server that answers every request after a fixed
//! latency, like Amberflo, Orb or Kable would when all goes well. For the send
//! benchmarks in `benches/run.sh`; std and flate2 only (gzip request bodies), a
//! thread per connection, keep-alive.
//!
//! ```sh
//! cargo run --release --example latency_server -- --latency-ms 20 --idle-timeout-s 60
//! ```
//!
//! Prints the port it listens on (127.0.0.1) as one line on standard output,
//! then serves until killed or until no request came for the idle timeout.
//! The answer depends on the path (or `--destination`): Orb (`.../ingest` under
//! `/v1`) gets `{"validation_failed":[]}`, Amberflo `/ingest` gets `N records
//! were ingested`, Amberflo `/customers` gets its body back, Kable
//! (`.../events/create`) an empty body. The latency is counted from the end of
//! the request body to the start of the answer. With `--stats PATH` the counts
//! (`connections requests events bytes`, bytes as they came on the wire) are
//! written to PATH after each request.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    /// Decide by the request's path.
    Auto,
    Amberflo,
    Orb,
    Kable,
}

struct Options {
    latency: Duration,
    api: Api,
    port: u16,
    idle: Duration,
    stats: Option<String>,
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    requests: AtomicU64,
    events: AtomicU64,
    bytes: AtomicU64,
    /// Milliseconds since start of the last request seen.
    last_activity: AtomicU64,
}

struct Shared {
    options: Options,
    counters: Counters,
    started: Instant,
    stats_lock: std::sync::Mutex<()>,
}

impl Shared {
    fn touch(&self) {
        let now = self.started.elapsed().as_millis() as u64;
        self.counters.last_activity.store(now, Ordering::Relaxed);
    }

    fn write_stats(&self) {
        let Some(path) = &self.options.stats else {
            return;
        };
        let _guard = self.stats_lock.lock().expect("stats lock");
        let c = &self.counters;
        let text = format!(
            "connections={} requests={} events={} bytes={}\n",
            c.connections.load(Ordering::Relaxed),
            c.requests.load(Ordering::Relaxed),
            c.events.load(Ordering::Relaxed),
            c.bytes.load(Ordering::Relaxed)
        );
        let _ = std::fs::write(path, text);
    }
}

struct Request {
    method: String,
    path: String,
    /// The body, gunzipped when it came with `Content-Encoding: gzip`.
    body: Vec<u8>,
    /// The body's size as it came.
    wire_bytes: usize,
    close: bool,
}

/// Reads one request; None at a clean end of the connection.
fn read_request(reader: &mut BufReader<TcpStream>) -> io::Result<Option<Request>> {
    let mut line = Vec::new();
    // Tolerate stray empty lines between requests.
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(None);
        }
        if !line.trim_ascii().is_empty() {
            break;
        }
    }
    let request_line = String::from_utf8_lossy(&line).trim().to_owned();
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or("/").to_owned();
    let http10 = parts.next() == Some("HTTP/1.0");
    let mut length = 0usize;
    let mut chunked = false;
    let mut close = http10;
    let mut expect_continue = false;
    let mut gzipped = false;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "end in headers",
            ));
        }
        let header = String::from_utf8_lossy(&line);
        let header = header.trim();
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                length = value
                    .parse()
                    .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "content-length"))?
            }
            "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
            "connection" => close = value.eq_ignore_ascii_case("close"),
            "expect" => expect_continue = value.eq_ignore_ascii_case("100-continue"),
            "content-encoding" => gzipped = value.eq_ignore_ascii_case("gzip"),
            _ => {}
        }
    }
    if expect_continue {
        reader
            .get_mut()
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            reader.read_until(b'\n', &mut line)?;
            let size_text = String::from_utf8_lossy(&line);
            let size_text = size_text.trim().split(';').next().unwrap_or_default();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "chunk size"))?;
            if size == 0 {
                // Trailers, then the empty line.
                loop {
                    line.clear();
                    if reader.read_until(b'\n', &mut line)? == 0 || line.trim_ascii().is_empty() {
                        break;
                    }
                }
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(&mut body[start..])?;
            line.clear();
            reader.read_until(b'\n', &mut line)?;
        }
    } else {
        body.resize(length, 0);
        reader.read_exact(&mut body)?;
    }
    let wire_bytes = body.len();
    if gzipped {
        let mut json = Vec::new();
        flate2::read::MultiGzDecoder::new(&body[..]).read_to_end(&mut json)?;
        body = json;
    }
    Ok(Some(Request {
        method,
        path,
        body,
        wire_bytes,
        close,
    }))
}

fn count(body: &[u8], needle: &[u8]) -> u64 {
    memchr::memmem::find_iter(body, needle).count() as u64
}

/// The answer's content type and body, and the number of events the request held.
fn answer(api: Api, request: &Request) -> (&'static str, Vec<u8>, u64) {
    let path = request.path.split('?').next().unwrap_or_default();
    let api = match api {
        Api::Auto if path.ends_with("/events/create") => Api::Kable,
        Api::Auto if path.ends_with("/customers") => Api::Amberflo,
        Api::Auto if path.ends_with("/v1/ingest") => Api::Orb,
        Api::Auto => Api::Amberflo,
        api => api,
    };
    match api {
        Api::Orb => (
            "application/json",
            br#"{"validation_failed":[]}"#.to_vec(),
            count(&request.body, b"\"idempotency_key\""),
        ),
        Api::Kable => (
            "application/json",
            Vec::new(),
            count(&request.body, b"\"transactionId\""),
        ),
        _ if request.method == "PUT" || path.ends_with("/customers") => {
            ("application/json", request.body.clone(), 1)
        }
        _ => {
            let n = count(&request.body, b"\"uniqueId\"");
            (
                "text/plain",
                format!("{n} records were ingested").into_bytes(),
                n,
            )
        }
    }
}

fn serve(stream: TcpStream, shared: Arc<Shared>) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::with_capacity(256 * 1024, stream);
    while let Some(request) = read_request(&mut reader)? {
        let received = Instant::now();
        shared.touch();
        let (content_type, body, events) = answer(shared.options.api, &request);
        let c = &shared.counters;
        c.requests.fetch_add(1, Ordering::Relaxed);
        c.events.fetch_add(events, Ordering::Relaxed);
        c.bytes
            .fetch_add(request.wire_bytes as u64, Ordering::Relaxed);
        shared.write_stats();
        let due = received + shared.options.latency;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let mut response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{}\r\n",
            body.len(),
            if request.close {
                "Connection: close\r\n"
            } else {
                ""
            }
        )
        .into_bytes();
        response.extend_from_slice(&body);
        writer.write_all(&response)?;
        shared.touch();
        if request.close {
            break;
        }
    }
    Ok(())
}

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        latency: Duration::from_millis(20),
        api: Api::Auto,
        port: 0,
        idle: Duration::from_secs(60),
        stats: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--latency-ms" => {
                let ms: f64 = value(&arg)?.parse().map_err(|e| format!("{arg}: {e}"))?;
                options.latency = Duration::from_secs_f64(ms / 1000.0);
            }
            "--idle-timeout-s" => {
                let s: f64 = value(&arg)?.parse().map_err(|e| format!("{arg}: {e}"))?;
                options.idle = Duration::from_secs_f64(s);
            }
            "--port" => options.port = value(&arg)?.parse().map_err(|e| format!("{arg}: {e}"))?,
            "--stats" => options.stats = Some(value(&arg)?),
            "--destination" => {
                options.api = match value(&arg)?.as_str() {
                    "auto" => Api::Auto,
                    "amberflo" => Api::Amberflo,
                    "orb" => Api::Orb,
                    "kable" => Api::Kable,
                    other => return Err(format!("unknown destination {other:?}")),
                }
            }
            "-h" | "--help" => {
                return Err("usage: latency_server [--latency-ms 20] [--destination auto|amberflo|orb|kable] [--port 0] [--idle-timeout-s 60] [--stats PATH]".into());
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(options)
}

fn main() -> ExitCode {
    let options = match parse_args() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("latency_server: {message}");
            return ExitCode::from(2);
        }
    };
    let listener = match TcpListener::bind(("127.0.0.1", options.port)) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("latency_server: cannot listen: {e}");
            return ExitCode::FAILURE;
        }
    };
    let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
    println!("{port}");
    let _ = io::stdout().flush();
    if let Err(e) = listener.set_nonblocking(true) {
        eprintln!("latency_server: {e}");
        return ExitCode::FAILURE;
    }
    let shared = Arc::new(Shared {
        options,
        counters: Counters::default(),
        started: Instant::now(),
        stats_lock: std::sync::Mutex::new(()),
    });
    shared.write_stats();
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                shared.touch();
                shared.counters.connections.fetch_add(1, Ordering::Relaxed);
                let shared = shared.clone();
                std::thread::spawn(move || {
                    if stream.set_nonblocking(false).is_ok() {
                        let _ = serve(stream, shared);
                    }
                });
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
                let last = shared.counters.last_activity.load(Ordering::Relaxed);
                let idle = (shared.started.elapsed().as_millis() as u64).saturating_sub(last);
                if Duration::from_millis(idle) >= shared.options.idle {
                    eprintln!(
                        "latency_server: idle for {:?}, stopping",
                        shared.options.idle
                    );
                    return ExitCode::SUCCESS;
                }
            }
            Err(e) => {
                eprintln!("latency_server: accept: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}
