//! A test-only HTTP/1.1 server that behaves like the Amberflo, Orb and Kable APIs as described in
//! their public API references and SDKs, with injectable faults.
//!
//! The HTTP handling is written by hand on `std::net::TcpListener` (one thread per connection,
//! keep-alive, `Content-Length` and chunked bodies, gzip request bodies) so that faults such as
//! "close the connection without an answer" have full control of the socket. Only loopback is used.
//! The server stops when the [`TestServer`] is dropped.
//!
//! Besides ingestion it imitates Orb backfills (`/v1/events/backfills...`, `?backfill_id=`) and
//! event search (`/v1/events/search`), and Amberflo customers (`/customers`) and usage queries
//! (`/usage`). Where the references are silent, the choice made is written next to the code.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

mod idempotency;

/// The `KABLE-CLIENT-ID` a Kable test server expects.
pub const KABLE_CLIENT_ID: &str = "kci_test";
/// Orb's documented maximum number of events per ingest request.
pub const ORB_MAX_EVENTS: usize = 500;

/// How often a connection thread that waits for bytes looks at the stop flag.
const POLL: Duration = Duration::from_millis(50);
/// A connection that sends nothing for this long is closed.
const IDLE_LIMIT: Duration = Duration::from_secs(60);
const MAX_LINE: usize = 64 * 1024;
const MAX_HEADERS: usize = 200;
const MAX_BODY: usize = 64 * 1024 * 1024;
const MAX_DECODED: u64 = 256 * 1024 * 1024;
/// Orb: how far in the future an event may be when a grace period is set.
const ORB_FUTURE_LIMIT_MS: i64 = 5 * 60 * 1000;
const DAY_MS: i64 = 24 * 60 * 60 * 1000;
/// Orb: one backfill spans at most 31 days (Orb's backfill limits).
const ORB_BACKFILL_MAX_SPAN_MS: i64 = 31 * DAY_MS;
/// Orb: a backfill closes itself at `close_time`, by default one day after creation.
const ORB_BACKFILL_DEFAULT_CLOSE_MS: i64 = DAY_MS;
/// Orb backfill list: default and maximum page size.
const ORB_LIST_DEFAULT_LIMIT: usize = 20;
const ORB_LIST_MAX_LIMIT: usize = 100;
/// Orb event search: at most this many `event_ids` per request.
pub const ORB_SEARCH_MAX_IDS: usize = 500;

/// Which API the server imitates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    Amberflo,
    Orb,
    Kable,
}

impl Api {
    pub const ALL: [Api; 3] = [Api::Amberflo, Api::Orb, Api::Kable];

    /// The destination type's name in the settings (`type = "..."`).
    pub fn name(self) -> &'static str {
        match self {
            Api::Amberflo => "amberflo",
            Api::Orb => "orb",
            Api::Kable => "kable",
        }
    }
}

/// A fault given to one request instead of (or before) normal handling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer this status with this body (JSON or text) instead of handling. An empty body with a
    /// status >= 400 gets the API's usual error body (Kable 500: `{"message":"Something went wrong"}`).
    Status(u16, String),
    /// Answer this status with header `Retry-After: <value>` (seconds or HTTP date).
    RetryAfter(u16, String),
    /// Orb style: this status with header `Transient-Error: true`.
    Transient(u16),
    /// Sleep this long, then handle normally (to exceed a client timeout). The request is still
    /// handled (and its events ingested) after the sleep, even if the client has given up.
    Delay(Duration),
    /// Read the request, then close the connection without any answer.
    Close,
    /// Handle the request (its effects are in place, and Orb keeps the answer for its
    /// idempotency key), then close the connection without answering: an answer lost on its way.
    HandleThenClose,
    /// Handle the request, then wait this long before answering (its effects are in place while
    /// the client waits, e.g. for a test to stop the client in between).
    Stall(Duration),
    /// Answer this status with this body as `Content-Type: text/html; charset=utf-8`, as a proxy
    /// or a captive portal would (nothing is ingested).
    Html(u16, String),
    /// Answer this status (a 3xx) with header `Location: <value>` and an empty body (nothing is
    /// ingested).
    Redirect(u16, String),
}

/// The body shape of Orb's answer when events fail validation (both are documented).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrbFailureShape {
    /// `{"validation_failed":[{"idempotency_key":"k","validation_errors":["..."]}]}`
    ValidationFailed,
    /// RFC 7807: `{"status":400,"type":"...","title":"...","detail":"...","validation_errors":[...]}`
    Rfc7807,
}

/// One request the server received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    pub method: String,
    /// The path without the query string.
    pub path: String,
    /// The raw query string (after `?`, not decoded), empty when there is none.
    pub query: String,
    /// Header names as sent (use [`Received::header`] for a case-insensitive look-up).
    pub headers: Vec<(String, String)>,
    /// The body, after chunked and gzip decoding.
    pub body: Vec<u8>,
    /// The status answered; 0 for [`Fault::Close`] and [`Fault::HandleThenClose`] (and while the
    /// answer is still pending).
    pub status: u16,
    /// When the request arrived (was fully read), on the server's clock: a counter shared with
    /// `handled_seq` and increased by every arrival and every end of handling.
    pub arrived_seq: u64,
    /// When handling ended (the request's effects, such as a created customer, are in place), on
    /// the same clock as `arrived_seq`; 0 while pending and for [`Fault::Close`].
    pub handled_seq: u64,
    /// Orb: answered with the kept answer to an earlier request with the same `Idempotency-Key`
    /// (`Idempotent-Replayed: true`), without handling it again.
    pub replayed: bool,
}

impl Received {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether this request was fully handled before `other` arrived, e.g. "the customer was
    /// created before the first meter record naming it arrived". Arrival order alone
    /// ([`TestServer::received`] order) does not prove that when a client sends concurrently.
    pub fn handled_before(&self, other: &Received) -> bool {
        self.handled_seq != 0 && self.handled_seq < other.arrived_seq
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON (`Value::Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// A query parameter, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        query_param(&self.query, name)
    }

    /// How many events the body holds (Amberflo/Kable: array length, or 1 for an object;
    /// Orb: the `events` array), 0 when it is not a batch.
    pub fn event_count(&self) -> usize {
        match self.json() {
            Value::Array(a) => a.len(),
            Value::Object(o) => match o.get("events") {
                Some(Value::Array(a)) => a.len(),
                _ => 1,
            },
            _ => 0,
        }
    }
}

struct State {
    requests: usize,
    faults: VecDeque<Fault>,
    faults_at: HashMap<usize, Fault>,
    /// Faults for the next request of this method whose path ends so, each taken once.
    faults_for: Vec<(String, String, Fault)>,
    /// Orb: answers kept by `Idempotency-Key`.
    idempotency: idempotency::Store,
    latency: Duration,
    poison: HashSet<String>,
    orb_reject: HashSet<String>,
    orb_shape: OrbFailureShape,
    orb_ingest_valid: bool,
    max_batch: Option<usize>,
    orb_grace: Option<Duration>,
    received: Vec<Received>,
    deliveries: BTreeMap<String, usize>,
    ingested: Vec<Value>,
    ingested_keys: HashSet<String>,
    customers: Vec<Value>,
    /// The clock of [`Received::arrived_seq`] and [`Received::handled_seq`].
    clock: u64,
    /// Orb backfills in creation order.
    backfills: Vec<Backfill>,
    /// Orb: idempotency key of an ingested event → the backfill it went to.
    event_backfill: HashMap<String, String>,
    /// Orb: reads of a closed (reverted) backfill that still show `reflecting`
    /// (`pending_revert`).
    backfill_reflect_after: usize,
    /// Open connections (a clone of each socket) by id, to shut them down on drop.
    connections: HashMap<u64, TcpStream>,
    next_connection: u64,
}

struct Shared {
    api: Api,
    api_key: String,
    stop: AtomicBool,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// A local imitation of one destination API. Dropping it stops the server.
pub struct TestServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    accept: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Start a server for `api` that accepts `api_key` (Kable: as `KABLE-CLIENT-SECRET`, with
    /// `KABLE-CLIENT-ID: kci_test`).
    pub fn start(api: Api, api_key: &str) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared {
            api,
            api_key: api_key.to_string(),
            stop: AtomicBool::new(false),
            state: Mutex::new(State {
                requests: 0,
                faults: VecDeque::new(),
                faults_at: HashMap::new(),
                faults_for: Vec::new(),
                idempotency: idempotency::Store::default(),
                latency: Duration::ZERO,
                poison: HashSet::new(),
                orb_reject: HashSet::new(),
                orb_shape: OrbFailureShape::ValidationFailed,
                orb_ingest_valid: false,
                max_batch: None,
                orb_grace: None,
                received: Vec::new(),
                deliveries: BTreeMap::new(),
                ingested: Vec::new(),
                ingested_keys: HashSet::new(),
                customers: Vec::new(),
                clock: 0,
                backfills: Vec::new(),
                event_backfill: HashMap::new(),
                backfill_reflect_after: 0,
                connections: HashMap::new(),
                next_connection: 0,
            }),
        });
        let accept_shared = Arc::clone(&shared);
        let accept = thread::Builder::new()
            .name(format!("test-server-{}", addr.port()))
            .spawn(move || accept_loop(listener, accept_shared))
            .expect("spawn the accept thread");
        TestServer {
            shared,
            addr,
            accept: Some(accept),
        }
    }

    /// The API this server imitates.
    pub fn api(&self) -> Api {
        self.shared.api
    }

    /// `http://127.0.0.1:PORT`, without any path.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What to put in the settings' `endpoint`: `http://127.0.0.1:PORT` for Amberflo and Kable,
    /// `http://127.0.0.1:PORT/v1` for Orb.
    pub fn endpoint(&self) -> String {
        match self.shared.api {
            Api::Orb => format!("http://{}/v1", self.addr),
            Api::Amberflo | Api::Kable => format!("http://{}", self.addr),
        }
    }

    /// The next requests (any path) each take one fault, in order; then normal handling resumes.
    /// A request that has a fault from [`TestServer::fault_on_request`] takes that one instead and
    /// leaves this queue alone.
    pub fn push_faults(&self, faults: Vec<Fault>) {
        self.shared.lock().faults.extend(faults);
    }

    /// The n-th request (1-based, counted over the server's life) gets this fault.
    pub fn fault_on_request(&self, n: usize, fault: Fault) {
        self.shared.lock().faults_at.insert(n, fault);
    }

    /// The next request with this method whose path ends with `path_end` (such as `/close`) gets
    /// this fault; a fault from [`TestServer::fault_on_request`] for the same request comes first.
    /// Calls add up, each taken by one request, in order.
    pub fn fault_on_next(&self, method: &str, path_end: &str, fault: Fault) {
        self.shared
            .lock()
            .faults_for
            .push((method.to_string(), path_end.to_string(), fault));
    }

    /// Orb: forget every kept answer, as when Orb's 48 hours for an `Idempotency-Key` have passed:
    /// a repeated key is handled anew.
    pub fn orb_forget_idempotency_keys(&self) {
        self.shared.lock().idempotency.forget();
    }

    /// Added to every answer (after the request is handled, before the answer is written).
    pub fn latency(&self, d: Duration) {
        self.shared.lock().latency = d;
    }

    /// Amberflo/Kable: any batch holding an event with this key (`uniqueId` / `transactionId`) is
    /// refused whole with 400 and nothing in it is ingested. Orb: an event with this
    /// `idempotency_key` fails validation (like [`TestServer::orb_reject_keys`]). Calls add up.
    pub fn poison(&self, key: &str) {
        self.shared.lock().poison.insert(key.to_string());
    }

    /// Orb: a batch holding these idempotency keys gets 400 naming exactly those keys (plus any
    /// event that is invalid on its own) with a validation error message in the chosen shape;
    /// `ingest_valid` says whether the other events of that batch are ingested. The shape and
    /// `ingest_valid` also apply to ordinary validation failures. Each call replaces the key set.
    pub fn orb_reject_keys(&self, keys: &[&str], shape: OrbFailureShape, ingest_valid: bool) {
        let mut st = self.shared.lock();
        st.orb_reject = keys.iter().map(|k| k.to_string()).collect();
        st.orb_shape = shape;
        st.orb_ingest_valid = ingest_valid;
    }

    /// More events than `n` in one request: 413 (checked before validation).
    pub fn max_batch(&self, n: usize) {
        self.shared.lock().max_batch = Some(n);
    }

    /// Orb: when `Some(d)`, events older than now − d (the message says to ingest them through a
    /// backfill) or more than 5 minutes in the future fail validation like Orb's ordinary ingest.
    /// Requests with a `backfill_id` query parameter are not checked (they go to a backfill, whose
    /// timeframe is checked instead). Default `None` (off).
    pub fn orb_grace_period(&self, d: Option<Duration>) {
        self.shared.lock().orb_grace = d;
    }

    /// Every request, in arrival order, with the status answered (0 for [`Fault::Close`]).
    pub fn received(&self) -> Vec<Received> {
        self.shared.lock().received.clone()
    }

    /// Key → how many times an event with that key was accepted by a request that answered 2xx
    /// (Amberflo `uniqueId`, Orb `idempotency_key`, Kable `transactionId`). Events ingested by an
    /// Orb 400 answer (`ingest_valid`) are in [`TestServer::ingested`] but not counted here.
    pub fn deliveries(&self) -> BTreeMap<String, usize> {
        self.shared.lock().deliveries.clone()
    }

    /// The accepted events (first copy per key), in order. Amberflo records lose unknown top-level
    /// keys (as Amberflo drops them); a record without `uniqueId` is deduplicated by its content,
    /// a Kable event without `transactionId` is never deduplicated. Events leave it through
    /// [`TestServer::orb_forget`], [`TestServer::amberflo_forget_day`], an Orb backfill revert
    /// (its events) and an Orb backfill with `replace_existing_events: true` (the events it
    /// replaces; a revert puts them back at the end).
    pub fn ingested(&self) -> Vec<Value> {
        self.shared.lock().ingested.clone()
    }

    /// Amberflo customers stored by `PUT /customers` (or `POST /customers`), last write per
    /// `customerId`, in order of first creation.
    pub fn customers(&self) -> Vec<Value> {
        self.shared.lock().customers.clone()
    }

    /// Amberflo: a customer record as if written earlier by someone else (no request is logged);
    /// `GET /customers?customerId=` answers it whole, `PUT` replaces it.
    pub fn amberflo_seed_customer(&self, record: Value) {
        self.shared.lock().customers.push(record);
    }

    /// (method, customerId) of every `GET`, `POST` and `PUT` request to `/customers`, in arrival
    /// order, whatever it was answered: `GET` takes the `customerId` query parameter, `POST` and
    /// `PUT` the body's `customerId`; "" when there is none. With [`Received::handled_before`] on
    /// [`TestServer::received`] a test can check that a customer existed before a meter record
    /// naming it arrived.
    pub fn customer_requests(&self) -> Vec<(String, String)> {
        let st = self.shared.lock();
        st.received
            .iter()
            .filter(|r| {
                r.path == "/customers" && matches!(r.method.as_str(), "GET" | "POST" | "PUT")
            })
            .map(|r| {
                let id = if r.method == "GET" {
                    r.query_param("customerId")
                } else {
                    r.json()
                        .get("customerId")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                };
                (r.method.clone(), id.unwrap_or_default())
            })
            .collect()
    }

    /// Amberflo: remove the ingested records of `customer` and `meter` whose `meterTimeInMillis`
    /// falls on the UTC day holding `day_start_seconds` (snapped down to midnight), so that a test
    /// can plant a "missing day". Their dedupe keys are freed (re-sending them ingests them again);
    /// [`TestServer::deliveries`] is not changed.
    pub fn amberflo_forget_day(&self, customer: &str, meter: &str, day_start_seconds: i64) {
        let day_ms = day_start_seconds.div_euclid(86_400).saturating_mul(DAY_MS);
        let mut st = self.shared.lock();
        forget_where(&mut st, |e| {
            e["customerId"].as_str() == Some(customer)
                && e["meterApiName"].as_str() == Some(meter)
                && amberflo_time_ms(e).is_some_and(|t| t >= day_ms && t - day_ms < DAY_MS)
        });
    }

    /// Orb: remove the ingested event with this idempotency key (so that a test can plant a
    /// "missing key" for event search); its key is freed and it no longer belongs to a backfill.
    /// [`TestServer::deliveries`] and the backfill's `events_ingested` are not changed.
    pub fn orb_forget(&self, key: &str) {
        let mut st = self.shared.lock();
        forget_where(&mut st, |e| e["idempotency_key"].as_str() == Some(key));
    }

    /// Orb: every backfill object, in creation order, as `GET /v1/events/backfills/ID` shows it
    /// (reading them here does not count as a poll). Backfills whose `close_time` has passed are
    /// closed first, as Orb closes them by itself.
    pub fn orb_backfills(&self) -> Vec<Value> {
        let mut st = self.shared.lock();
        orb_settle_backfills(&mut st, now_ms());
        st.backfills.iter().map(Backfill::to_json).collect()
    }

    /// Orb: the id of the backfill through which the ingested event with this idempotency key was
    /// accepted; `None` when it came through ordinary ingest or is not ingested (any more: a
    /// reverted backfill's events are gone).
    pub fn backfill_of(&self, key: &str) -> Option<String> {
        self.shared.lock().event_backfill.get(key).cloned()
    }

    /// Orb: after `POST .../close`, the next `n` reads of that backfill (`GET
    /// /v1/events/backfills/ID`, or a list page that holds it) show status `reflecting`; the read
    /// after them shows `reflected`. With `n` = 0 (the default) it is `reflected` at once,
    /// including in the close answer. The same rule takes a reverted backfill through
    /// `pending_revert` to `reverted`. The `n` in force when a backfill is closed (reverted)
    /// applies to it.
    pub fn orb_backfill_reflect_after_polls(&self, n: usize) {
        self.shared.lock().backfill_reflect_after = n;
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Unblock accept() by connecting to ourselves; join only when that worked, so that drop
        // can never hang.
        let woke = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)).is_ok();
        if let Some(handle) = self.accept.take()
            && woke
        {
            let _ = handle.join();
        }
        for (_, conn) in self.shared.lock().connections.drain() {
            let _ = conn.shutdown(Shutdown::Both);
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stopped() {
            break;
        }
        let stream = match stream {
            Ok(s) => s,
            Err(_) => {
                thread::sleep(Duration::from_millis(5));
                continue;
            }
        };
        let id = {
            let mut st = shared.lock();
            st.next_connection += 1;
            let id = st.next_connection;
            if let Ok(clone) = stream.try_clone() {
                st.connections.insert(id, clone);
            }
            id
        };
        let conn_shared = Arc::clone(&shared);
        let spawned = thread::Builder::new()
            .name("test-server-conn".into())
            .spawn(move || {
                serve_connection(&conn_shared, stream);
                conn_shared.lock().connections.remove(&id);
            });
        if spawned.is_err() {
            shared.lock().connections.remove(&id);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1

/// Reads from the socket, waking up every [`POLL`] to look at the stop flag; gives up after
/// [`IDLE_LIMIT`] without data.
struct ConnReader {
    stream: TcpStream,
    shared: Arc<Shared>,
}

impl Read for ConnReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let start = Instant::now();
        loop {
            if self.shared.stopped() {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "server stopped",
                ));
            }
            match self.stream.read(buf) {
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    if start.elapsed() > IDLE_LIMIT {
                        return Err(e);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => return other,
            }
        }
    }
}

struct Request {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    keep_alive: bool,
    /// Set when the body could not be decoded: (status, reason).
    body_error: Option<(u16, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        let body = body.into();
        let mut headers = Vec::new();
        if !body.is_empty() {
            headers.push(("Content-Type".to_string(), content_type.to_string()));
        }
        Response {
            status,
            headers,
            body,
        }
    }

    fn json(status: u16, value: &Value) -> Response {
        Response::new(status, "application/json", value.to_string())
    }

    fn text(status: u16, text: &str) -> Response {
        Response::new(status, "text/plain; charset=utf-8", text)
    }

    fn empty(status: u16) -> Response {
        Response::new(status, "", Vec::new())
    }

    /// A body given by a test: JSON when it looks like JSON, else text.
    fn guess(status: u16, body: &str) -> Response {
        let t = body.trim_start();
        if t.starts_with('{') || t.starts_with('[') {
            Response::new(status, "application/json", body)
        } else {
            Response::text(status, body)
        }
    }

    fn with_header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

fn serve_connection(shared: &Arc<Shared>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(POLL));
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::new(ConnReader {
        stream,
        shared: Arc::clone(shared),
    });
    while let Ok(Some(request)) = read_request(&mut reader, &mut writer) {
        let (n, fault, latency) = {
            let mut st = shared.lock();
            st.requests += 1;
            let n = st.requests;
            let targeted = st.faults_for.iter().position(|(method, path_end, _)| {
                *method == request.method && request.path.ends_with(path_end.as_str())
            });
            let fault = st
                .faults_at
                .remove(&n)
                .or_else(|| targeted.map(|i| st.faults_for.remove(i).2))
                .or_else(|| st.faults.pop_front());
            st.clock += 1;
            let arrived_seq = st.clock;
            st.received.push(Received {
                method: request.method.clone(),
                path: request.path.clone(),
                query: request.query.clone(),
                headers: request.headers.clone(),
                body: request.body.clone(),
                status: 0,
                arrived_seq,
                handled_seq: 0,
                replayed: false,
            });
            (n, fault, st.latency)
        };
        let mut stall = Duration::ZERO;
        let mut answered = true;
        let response = match fault {
            Some(Fault::Close) => {
                thread::sleep(latency);
                break;
            }
            Some(Fault::Delay(d)) => {
                thread::sleep(d);
                handle_keyed(shared, &request)
            }
            Some(Fault::HandleThenClose) => {
                answered = false;
                handle_keyed(shared, &request)
            }
            Some(Fault::Stall(d)) => {
                stall = d;
                handle_keyed(shared, &request)
            }
            Some(Fault::Status(code, body)) => fault_response(shared.api, code, &body),
            Some(Fault::RetryAfter(code, value)) => {
                fault_response(shared.api, code, "").with_header("Retry-After", &value)
            }
            Some(Fault::Transient(code)) => {
                fault_response(shared.api, code, "").with_header("Transient-Error", "true")
            }
            Some(Fault::Html(code, body)) => {
                Response::new(code, "text/html; charset=utf-8", body.into_bytes())
            }
            Some(Fault::Redirect(code, location)) => {
                Response::empty(code).with_header("Location", &location)
            }
            None => handle_keyed(shared, &request),
        };
        {
            let mut st = shared.lock();
            st.clock += 1;
            let handled_seq = st.clock;
            if let Some(r) = st.received.get_mut(n - 1) {
                r.status = if answered { response.status } else { 0 };
                r.handled_seq = handled_seq;
                r.replayed = response
                    .headers
                    .iter()
                    .any(|(k, v)| k == "Idempotent-Replayed" && v == "true");
            }
        }
        if !answered {
            break;
        }
        thread::sleep(latency + stall);
        let keep_alive = request.keep_alive && !shared.stopped();
        if write_response(&mut writer, shared.api, n, &response, keep_alive).is_err() || !keep_alive
        {
            break;
        }
    }
    let _ = writer.shutdown(Shutdown::Both);
}

fn io_err(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// One line without its CRLF; `None` at a clean end of stream.
fn read_line(r: &mut impl BufRead) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    loop {
        let (done, used) = {
            let buf = r.fill_buf()?;
            if buf.is_empty() {
                if line.is_empty() {
                    return Ok(None);
                }
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            match buf.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    line.extend_from_slice(&buf[..i]);
                    (true, i + 1)
                }
                None => {
                    line.extend_from_slice(buf);
                    (false, buf.len())
                }
            }
        };
        r.consume(used);
        if line.len() > MAX_LINE {
            return Err(io_err("line too long"));
        }
        if done {
            break;
        }
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(Some(String::from_utf8_lossy(&line).into_owned()))
}

fn read_exact_into(r: &mut impl BufRead, n: usize, body: &mut Vec<u8>) -> io::Result<()> {
    if body.len() + n > MAX_BODY {
        return Err(io_err("body too large"));
    }
    let got = r.take(n as u64).read_to_end(body)?;
    if got != n {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

fn read_request(r: &mut impl BufRead, w: &mut TcpStream) -> io::Result<Option<Request>> {
    // RFC 9112: a server should ignore at least one empty line before the request line.
    let mut empty_lines = 0;
    let line = loop {
        match read_line(r)? {
            None => return Ok(None),
            Some(l) if l.is_empty() => {
                empty_lines += 1;
                if empty_lines > 4 {
                    return Err(io_err("too many empty lines"));
                }
            }
            Some(l) => break l,
        }
    };
    let mut parts = line.split_whitespace();
    let (method, target, version) = match (parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v)) if v.starts_with("HTTP/1.") => {
            (m.to_string(), t.to_string(), v.to_string())
        }
        _ => return Err(io_err("bad request line")),
    };
    let mut headers = Vec::new();
    loop {
        let l = read_line(r)?.ok_or_else(|| io_err("end of stream in headers"))?;
        if l.is_empty() {
            break;
        }
        if headers.len() >= MAX_HEADERS {
            return Err(io_err("too many headers"));
        }
        let (k, v) = l.split_once(':').ok_or_else(|| io_err("bad header line"))?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let connection = get("connection").unwrap_or("").to_ascii_lowercase();
    let keep_alive = if version == "HTTP/1.0" {
        connection.contains("keep-alive")
    } else {
        !connection.contains("close")
    };
    if version != "HTTP/1.0"
        && get("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    {
        w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        w.flush()?;
    }
    let chunked =
        get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let mut body = Vec::new();
    if chunked {
        loop {
            let size_line = read_line(r)?.ok_or_else(|| io_err("end of stream in chunk"))?;
            let size_text = size_line.split(';').next().unwrap_or("").trim();
            let size =
                usize::from_str_radix(size_text, 16).map_err(|_| io_err("bad chunk size"))?;
            if size == 0 {
                // Trailers, up to the empty line.
                for _ in 0..=MAX_HEADERS {
                    let l = read_line(r)?.ok_or_else(|| io_err("end of stream in trailers"))?;
                    if l.is_empty() {
                        break;
                    }
                }
                break;
            }
            read_exact_into(r, size, &mut body)?;
            let end = read_line(r)?.ok_or_else(|| io_err("end of stream after chunk"))?;
            if !end.is_empty() {
                return Err(io_err("chunk not followed by CRLF"));
            }
        }
    } else if let Some(len) = get("content-length") {
        let len: usize = len
            .trim()
            .parse()
            .map_err(|_| io_err("bad Content-Length"))?;
        read_exact_into(r, len, &mut body)?;
    }
    let mut body_error = None;
    match get("content-encoding").map(|v| v.trim().to_ascii_lowercase()) {
        None => {}
        Some(enc) if enc.is_empty() || enc == "identity" => {}
        Some(enc) if enc == "gzip" || enc == "x-gzip" => {
            let mut decoded = Vec::new();
            let result = flate2::read::MultiGzDecoder::new(&body[..])
                .take(MAX_DECODED)
                .read_to_end(&mut decoded);
            match result {
                Ok(_) => body = decoded,
                Err(e) => {
                    body_error = Some((400, format!("the gzip body could not be decoded: {e}")))
                }
            }
        }
        Some(enc) => {
            body_error = Some((415, format!("unsupported Content-Encoding: {enc}")));
        }
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target, String::new()),
    };
    Ok(Some(Request {
        method,
        path,
        query,
        headers,
        body,
        keep_alive,
        body_error,
    }))
}

fn write_response(
    w: &mut TcpStream,
    api: Api,
    n: usize,
    response: &Response,
    keep_alive: bool,
) -> io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Length: {}\r\n",
        response.status,
        reason(response.status),
        response.body.len()
    );
    match api {
        Api::Amberflo => out.push_str(&format!("X-Request-Id: {}\r\n", request_id(n))),
        Api::Kable => out.push_str(&format!("X-REQUEST-ID: {}\r\n", request_id(n))),
        Api::Orb => {}
    }
    for (k, v) in &response.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if !keep_alive {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&response.body);
    w.write_all(&bytes)?;
    w.flush()
}

fn request_id(n: usize) -> String {
    format!("test-{n:08}")
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Error bodies

/// The API's usual error answer for a status, with a human detail.
fn error_response(api: Api, status: u16, detail: &str) -> Response {
    match api {
        // Amberflo error bodies are opaque text (not documented).
        Api::Amberflo => Response::text(status, &format!("{}: {detail}", reason(status))),
        Api::Orb => {
            let (slug, title) = orb_error_type(status);
            Response::json(
                status,
                &json!({
                    "status": status,
                    "type": format!("https://docs.withorb.com/reference/error-responses#{slug}"),
                    "title": title,
                    "detail": detail,
                }),
            )
        }
        Api::Kable => Response::json(status, &json!({ "message": detail })),
    }
}

/// Orb's 400 for a request the state of things does not allow.
fn orb_constraint_violation(detail: &str) -> Response {
    Response::json(
        400,
        &json!({
            "status": 400,
            "type": "https://docs.withorb.com/reference/error-responses#400-constraint-violation",
            "title": "Constraint violation",
            "detail": detail,
        }),
    )
}

fn orb_error_type(status: u16) -> (String, String) {
    let (slug, title) = match status {
        400 => ("400-request-validation-errors", "Request validation failed"),
        401 => ("401-authentication-error", "Authentication error"),
        404 => ("404-resource-not-found", "Resource not found"),
        409 => ("409-resource-conflict", "Resource conflict"),
        413 => ("413-request-too-large", "Request too large"),
        429 => ("429-too-many-requests", "Too many requests"),
        500 => ("500-internal-server-error", "Internal server error"),
        _ => return (format!("{status}-error"), reason(status).to_string()),
    };
    (slug.to_string(), title.to_string())
}

/// The answer for a Status/RetryAfter/Transient fault.
fn fault_response(api: Api, status: u16, body: &str) -> Response {
    if !body.is_empty() {
        return Response::guess(status, body);
    }
    if status < 400 {
        return Response::empty(status);
    }
    let detail = match (api, status) {
        (Api::Kable, 500) => "Something went wrong",
        _ => reason(status),
    };
    error_response(api, status, detail)
}

// ---------------------------------------------------------------------------------------------
// Handling

/// Handles a request, or (Orb) answers a repeated `Idempotency-Key` from what was kept.
fn handle_keyed(shared: &Shared, req: &Request) -> Response {
    if shared.api != Api::Orb {
        return handle(shared, req);
    }
    let arrival = shared.lock().idempotency.arrive(req);
    match arrival {
        idempotency::Arrival::Unkeyed => handle(shared, req),
        idempotency::Arrival::Answer(response) => response,
        idempotency::Arrival::Handle(key) => {
            let response = handle(shared, req);
            shared.lock().idempotency.finish(&key, response)
        }
    }
}

fn handle(shared: &Shared, req: &Request) -> Response {
    match shared.api {
        Api::Amberflo => amberflo(shared, req),
        Api::Orb => orb(shared, req),
        Api::Kable => kable(shared, req),
    }
}

fn not_found(api: Api, req: &Request) -> Response {
    error_response(
        api,
        404,
        &format!("no route for {} {}", req.method, req.path),
    )
}

/// Count a delivery (when asked) and ingest the event unless its key was ingested before.
/// Without a key, `dedupe_unkeyed` drops an event identical to one already ingested. Returns
/// whether the event was ingested (false for a duplicate).
fn record_acceptance(
    st: &mut State,
    key: Option<&str>,
    count_delivery: bool,
    dedupe_unkeyed: bool,
    event: Value,
) -> bool {
    let dedupe_key = match key {
        Some(k) => {
            if count_delivery {
                *st.deliveries.entry(k.to_string()).or_insert(0) += 1;
            }
            Some(format!("key:{k}"))
        }
        None if dedupe_unkeyed => Some(format!("content:{event}")),
        None => None,
    };
    match dedupe_key {
        Some(d) => {
            if st.ingested_keys.insert(d) {
                st.ingested.push(event);
                return true;
            }
            false
        }
        None => {
            st.ingested.push(event);
            true
        }
    }
}

/// The key of an ingested event: Amberflo `uniqueId`, Orb `idempotency_key`, Kable
/// `transactionId`.
fn event_key(e: &Value) -> Option<&str> {
    ["uniqueId", "idempotency_key", "transactionId"]
        .iter()
        .find_map(|k| e.get(*k).and_then(Value::as_str))
}

/// Remove the ingested events that match, free their dedupe keys (as `record_acceptance` made
/// them) and forget which backfill they went to. Returns them with that backfill, in order.
fn forget_where(st: &mut State, matches: impl Fn(&Value) -> bool) -> Vec<(Value, Option<String>)> {
    let (gone, kept): (Vec<Value>, Vec<Value>) = std::mem::take(&mut st.ingested)
        .into_iter()
        .partition(|e| matches(e));
    st.ingested = kept;
    gone.into_iter()
        .map(|e| {
            st.ingested_keys.remove(&format!("content:{e}"));
            let backfill = match event_key(&e) {
                Some(k) => {
                    st.ingested_keys.remove(&format!("key:{k}"));
                    st.event_backfill.remove(k)
                }
                None => None,
            };
            (e, backfill)
        })
        .collect()
}

fn parse_json(api: Api, req: &Request) -> Result<Value, Response> {
    if let Some((status, why)) = &req.body_error {
        return Err(error_response(api, *status, why));
    }
    serde_json::from_slice(&req.body)
        .map_err(|e| error_response(api, 400, &format!("the body is not valid JSON: {e}")))
}

fn too_many(api: Api, st: &State, count: usize) -> Option<Response> {
    match st.max_batch {
        Some(max) if count > max => Some(error_response(
            api,
            413,
            &format!("{count} events in one request; at most {max} are allowed"),
        )),
        _ => None,
    }
}

fn non_empty_str<'a>(o: &'a Map<String, Value>, key: &str) -> Result<&'a str, String> {
    match o.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(Value::String(_)) => Err(format!("{key} must not be empty")),
        Some(_) => Err(format!("{key} must be a string")),
        None => Err(format!("{key} is required")),
    }
}

fn optional_str(o: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match o.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("{key} must be a string")),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Amberflo

const AMBERFLO_RECORD_KEYS: [&str; 6] = [
    "customerId",
    "meterApiName",
    "meterValue",
    "meterTimeInMillis",
    "uniqueId",
    "dimensions",
];

/// Amberflo's allowed dimension characters (reconstructed from its FAQ).
pub fn amberflo_allowed_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-_ !.*'()&$@=;:+,?".contains(c)
}

fn amberflo(shared: &Shared, req: &Request) -> Response {
    let api = Api::Amberflo;
    let known = matches!(
        (req.method.as_str(), req.path.as_str()),
        ("POST", "/ingest")
            | ("PUT", "/customers")
            | ("POST", "/customers")
            | ("GET", "/customers")
            | ("POST", "/usage")
    );
    if !known {
        return not_found(api, req);
    }
    if req.header("x-api-key") != Some(shared.api_key.as_str()) {
        return Response::text(401, "Unauthorized");
    }
    match (req.method.as_str(), req.path.as_str()) {
        ("POST", "/ingest") => amberflo_ingest(shared, req),
        ("POST", "/usage") => amberflo_usage(shared, req),
        ("GET", "/customers") => {
            if let Some((status, why)) = &req.body_error {
                return error_response(api, *status, why);
            }
            let st = shared.lock();
            match query_param(&req.query, "customerId") {
                Some(id) => {
                    let found = st
                        .customers
                        .iter()
                        .find(|c| c["customerId"].as_str() == Some(id.as_str()));
                    Response::json(200, found.unwrap_or(&json!({})))
                }
                None => Response::json(200, &Value::Array(st.customers.clone())),
            }
        }
        (method, _) => amberflo_customer_write(shared, req, method == "PUT"),
    }
}

fn amberflo_ingest(shared: &Shared, req: &Request) -> Response {
    let api = Api::Amberflo;
    let body = match parse_json(api, req) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let records = match body {
        Value::Array(a) => a,
        Value::Object(_) => vec![body],
        _ => return error_response(api, 400, "the body must be a JSON array of meter records"),
    };
    let mut st = shared.lock();
    if let Some(r) = too_many(api, &st, records.len()) {
        return r;
    }
    // Whether one bad record fails the whole batch is unconfirmed: this server refuses the whole
    // batch (the stricter option), so a client must split or drop the bad record and re-send.
    for (i, record) in records.iter().enumerate() {
        if let Err(why) = validate_amberflo_record(record) {
            return error_response(api, 400, &format!("invalid record at index {i}: {why}"));
        }
    }
    let poisoned = records.iter().find_map(|r| {
        r.get("uniqueId")
            .and_then(Value::as_str)
            .filter(|k| st.poison.contains(*k))
    });
    if let Some(key) = poisoned {
        return error_response(api, 400, &format!("record {key} could not be ingested"));
    }
    let n = records.len();
    for record in records {
        // Unknown top-level keys are silently dropped, as Amberflo does.
        let stored: Map<String, Value> = record
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| AMBERFLO_RECORD_KEYS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let key = stored
            .get("uniqueId")
            .and_then(Value::as_str)
            .map(str::to_string);
        record_acceptance(&mut st, key.as_deref(), true, true, Value::Object(stored));
    }
    Response::text(200, &format!("{n} records were ingested"))
}

fn validate_amberflo_record(record: &Value) -> Result<(), String> {
    let o = record
        .as_object()
        .ok_or("a meter record must be a JSON object")?;
    non_empty_str(o, "customerId")?;
    non_empty_str(o, "meterApiName")?;
    match o.get("meterValue") {
        Some(Value::Number(_)) => {}
        _ => return Err("meterValue must be a number".into()),
    }
    let time = o.get("meterTimeInMillis");
    let time_ok = time.and_then(Value::as_i64).is_some_and(|t| t > 0)
        || time.and_then(Value::as_u64).is_some_and(|t| t > 0);
    if !time_ok {
        return Err("meterTimeInMillis must be an integer > 0".into());
    }
    optional_str(o, "uniqueId")?;
    match o.get("dimensions") {
        None => {}
        Some(Value::Object(dims)) => {
            for (k, v) in dims {
                if k.is_empty() || !k.chars().all(amberflo_allowed_char) {
                    return Err(format!(
                        "dimension name {k:?} must be 1 or more allowed characters"
                    ));
                }
                let s = v
                    .as_str()
                    .ok_or_else(|| format!("dimension {k} must be a string"))?;
                let len = s.chars().count();
                if !(1..=200).contains(&len) {
                    return Err(format!("dimension {k} must have 1 to 200 characters"));
                }
                if let Some(c) = s.chars().find(|c| !amberflo_allowed_char(*c)) {
                    return Err(format!(
                        "dimension {k} holds a character that is not allowed: {c:?}"
                    ));
                }
            }
        }
        Some(_) => return Err("dimensions must be an object".into()),
    }
    Ok(())
}

/// `meterTimeInMillis` of a stored record.
fn amberflo_time_ms(record: &Value) -> Option<i64> {
    record.get("meterTimeInMillis").and_then(Value::as_i64)
}

/// A checked `POST /usage` body.
struct UsageQuery {
    meter: String,
    start_ms: i64,
    end_ms: i64,
    /// Filter key (`customerId` or a dimension name) → the values it may take.
    filter: Vec<(String, Vec<String>)>,
}

fn parse_usage_query(v: &Value) -> Result<UsageQuery, String> {
    let o = v
        .as_object()
        .ok_or("the usage query must be a JSON object")?;
    let meter = non_empty_str(o, "meterApiName")?.to_string();
    // Only what the API reference documents is imitated: SUM per DAY, grouped by customerId.
    match non_empty_str(o, "aggregation")? {
        "SUM" => {}
        other => {
            return Err(format!(
                "aggregation {other:?} is not supported; use \"SUM\""
            ));
        }
    }
    match non_empty_str(o, "timeGroupingInterval")? {
        "DAY" => {}
        other => {
            return Err(format!(
                "timeGroupingInterval {other:?} is not supported; use \"DAY\""
            ));
        }
    }
    // groupBy is required here (Amberflo would answer one ungrouped total without it, which this
    // server does not imitate): it must be exactly ["customerId"].
    if o.get("groupBy") != Some(&json!(["customerId"])) {
        return Err("groupBy must be [\"customerId\"]".into());
    }
    let range = match o.get("timeRange") {
        Some(Value::Object(r)) => r,
        Some(_) => return Err("timeRange must be an object".into()),
        None => return Err("timeRange is required".into()),
    };
    let seconds = |key: &str| match range.get(key) {
        Some(v) => v
            .as_i64()
            .filter(|s| *s >= 0)
            .ok_or_else(|| format!("timeRange.{key} must be an integer >= 0")),
        None => Err(format!("timeRange.{key} is required")),
    };
    let start = seconds("startTimeInSeconds")?;
    let end = seconds("endTimeInSeconds")?;
    // An empty or reversed range is refused rather than answered with nothing.
    if start >= end {
        return Err("timeRange.startTimeInSeconds must be before endTimeInSeconds".into());
    }
    let mut filter = Vec::new();
    match o.get("filter") {
        None | Some(Value::Null) => {}
        Some(Value::Object(f)) => {
            // Keys other than customerId filter on dimensions (Amberflo's filter does both).
            // An empty value list is refused: it would match nothing and is most likely a bug.
            for (k, vals) in f {
                let vals: Vec<String> = match vals {
                    Value::Array(a) if !a.is_empty() && a.iter().all(Value::is_string) => a
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect(),
                    _ => return Err(format!("filter.{k} must be a non-empty array of strings")),
                };
                filter.push((k.clone(), vals));
            }
        }
        Some(_) => return Err("filter must be an object".into()),
    }
    Ok(UsageQuery {
        meter,
        start_ms: start.saturating_mul(1000),
        end_ms: end.saturating_mul(1000),
        filter,
    })
}

/// `POST /usage`: SUM of `meterValue` of the ingested records of one meter with
/// `start <= meterTimeInMillis < end`, grouped by customerId and by UTC day. One `clientMeters`
/// entry per customer that has records (customers in ascending id order); days in ascending
/// order, and days without records are left out (not listed with 0).
fn amberflo_usage(shared: &Shared, req: &Request) -> Response {
    let api = Api::Amberflo;
    let body = match parse_json(api, req) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let q = match parse_usage_query(&body) {
        Ok(q) => q,
        Err(why) => return error_response(api, 400, &why),
    };
    let st = shared.lock();
    let mut groups: BTreeMap<String, BTreeMap<i64, f64>> = BTreeMap::new();
    for r in &st.ingested {
        let (Some(customer), Some(t), Some(value)) = (
            r["customerId"].as_str(),
            amberflo_time_ms(r),
            r["meterValue"].as_f64(),
        ) else {
            continue;
        };
        if r["meterApiName"].as_str() != Some(q.meter.as_str()) || t < q.start_ms || t >= q.end_ms {
            continue;
        }
        let passes = q.filter.iter().all(|(k, vals)| {
            let v = if k == "customerId" {
                Some(customer)
            } else {
                r["dimensions"][k.as_str()].as_str()
            };
            v.is_some_and(|v| vals.iter().any(|x| x == v))
        });
        if passes {
            let day = t.div_euclid(DAY_MS) * (DAY_MS / 1000);
            *groups
                .entry(customer.to_string())
                .or_default()
                .entry(day)
                .or_insert(0.0) += value;
        }
    }
    let client_meters: Vec<Value> = groups
        .into_iter()
        .map(|(customer, days)| {
            json!({
                "group": {"groupInfo": {"customerId": customer}},
                "groupValue": days.values().sum::<f64>(),
                "values": days
                    .into_iter()
                    .map(|(day, value)| json!({"secondsSinceEpochUtc": day, "value": value}))
                    .collect::<Vec<_>>(),
            })
        })
        .collect();
    Response::json(
        200,
        &json!({
            "metadata": {
                "meterApiName": q.meter,
                "aggregation": "SUM",
                "timeGroupingInterval": "DAY",
                "timeRange": body["timeRange"],
            },
            "clientMeters": client_meters,
        }),
    )
}

fn validate_customer(v: &Value) -> Result<String, String> {
    let o = v.as_object().ok_or("the customer must be a JSON object")?;
    let id = non_empty_str(o, "customerId")?;
    non_empty_str(o, "customerName")?;
    optional_str(o, "customerEmail")?;
    // `lifecycleStage` is optional; the API reference names no values, so any string is accepted.
    optional_str(o, "lifecycleStage")?;
    match o.get("traits") {
        None => {}
        Some(Value::Object(traits)) => {
            if let Some((k, _)) = traits.iter().find(|(_, v)| !v.is_string()) {
                return Err(format!("trait {k} must be a string"));
            }
        }
        Some(_) => return Err("traits must be an object of strings".into()),
    }
    Ok(id.to_string())
}

/// `PUT /customers` creates or replaces the whole record; `POST /customers` creates (409 when the
/// customer exists).
fn amberflo_customer_write(shared: &Shared, req: &Request, put: bool) -> Response {
    let api = Api::Amberflo;
    let body = match parse_json(api, req) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let id = match validate_customer(&body) {
        Ok(id) => id,
        Err(why) => return error_response(api, 400, &why),
    };
    let mut st = shared.lock();
    let existing = st
        .customers
        .iter()
        .position(|c| c["customerId"].as_str() == Some(id.as_str()));
    match existing {
        Some(_) if !put => error_response(api, 409, &format!("customer {id} already exists")),
        Some(i) => {
            st.customers[i] = body.clone();
            Response::json(200, &body)
        }
        None => {
            st.customers.push(body.clone());
            Response::json(200, &body)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Orb

fn orb(shared: &Shared, req: &Request) -> Response {
    let api = Api::Orb;
    let segments: Vec<&str> = req.path.split('/').collect();
    let route = match (req.method.as_str(), segments.as_slice()) {
        ("POST", ["", "v1", "ingest"]) => OrbRoute::Ingest,
        ("POST", ["", "v1", "events", "search"]) => OrbRoute::Search,
        ("POST", ["", "v1", "events", "backfills"]) => OrbRoute::CreateBackfill,
        ("GET", ["", "v1", "events", "backfills"]) => OrbRoute::ListBackfills,
        ("GET", ["", "v1", "events", "backfills", id]) if !id.is_empty() => {
            OrbRoute::GetBackfill(percent_decode(id))
        }
        ("POST", ["", "v1", "events", "backfills", id, "close"]) if !id.is_empty() => {
            OrbRoute::CloseBackfill(percent_decode(id))
        }
        ("POST", ["", "v1", "events", "backfills", id, "revert"]) if !id.is_empty() => {
            OrbRoute::RevertBackfill(percent_decode(id))
        }
        // Orb's host answers a path outside its API (no `/v1`) with a 200 that
        // is not an API answer, so a wrong endpoint is not told by a 404.
        _ if segments.get(1) != Some(&"v1") => return Response::json(200, &json!({})),
        _ => return not_found(api, req),
    };
    let authorized = req
        .header("authorization")
        .and_then(|v| v.split_once(' '))
        .is_some_and(|(scheme, token)| {
            scheme.eq_ignore_ascii_case("bearer") && token.trim() == shared.api_key
        });
    if !authorized {
        return error_response(api, 401, "Missing or invalid API key");
    }
    match route {
        OrbRoute::Ingest => orb_ingest(shared, req),
        OrbRoute::Search => orb_search(shared, req),
        OrbRoute::CreateBackfill => orb_create_backfill(shared, req),
        OrbRoute::ListBackfills => orb_list_backfills(shared, req),
        OrbRoute::GetBackfill(id) => {
            let mut st = shared.lock();
            orb_settle_backfills(&mut st, now_ms());
            match backfill_index(&st, &id) {
                Some(i) => Response::json(200, &read_backfill(&mut st.backfills[i])),
                None => no_backfill(&id),
            }
        }
        OrbRoute::CloseBackfill(id) => orb_close_or_revert(shared, &id, false),
        OrbRoute::RevertBackfill(id) => orb_close_or_revert(shared, &id, true),
    }
}

enum OrbRoute {
    Ingest,
    Search,
    CreateBackfill,
    ListBackfills,
    GetBackfill(String),
    CloseBackfill(String),
    RevertBackfill(String),
}

fn orb_ingest(shared: &Shared, req: &Request) -> Response {
    let api = Api::Orb;
    let body = match parse_json(api, req) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let events = match body.get("events") {
        Some(Value::Array(a)) if body.is_object() => a,
        _ => {
            return error_response(
                api,
                400,
                "the body must be an object with an `events` array",
            );
        }
    };
    let mut st = shared.lock();
    if let Some(r) = too_many(api, &st, events.len()) {
        return r;
    }
    if events.len() > ORB_MAX_EVENTS {
        return error_response(
            api,
            400,
            &format!(
                "{} events in one request; at most {ORB_MAX_EVENTS} events are allowed per request",
                events.len()
            ),
        );
    }
    // One idempotency key standing for two different events makes Orb refuse the whole request,
    // naming no event (400); the same event twice is one event.
    let mut bodies: HashMap<&str, &Value> = HashMap::new();
    for event in events {
        if let Some(key) = event.get("idempotency_key").and_then(Value::as_str)
            && bodies
                .insert(key, event)
                .is_some_and(|earlier| earlier != event)
        {
            return error_response(
                api,
                400,
                &format!("idempotency key {key} is used by two different events in this request"),
            );
        }
    }
    let now = now_ms();
    // A request with `backfill_id` goes to that backfill, which must exist and be pending: the
    // whole request is refused with 400 (RFC 7807) otherwise. Its events skip the grace-period
    // check (past and future) and must fall inside the backfill's timeframe instead.
    let backfill = match query_param(&req.query, "backfill_id") {
        None => None,
        Some(id) => {
            orb_settle_backfills(&mut st, now);
            match backfill_index(&st, &id) {
                Some(i) if st.backfills[i].status == BackfillStatus::Pending => Some(i),
                Some(i) => {
                    return error_response(
                        api,
                        400,
                        &format!(
                            "backfill {id} is {}; events can only be ingested into a pending backfill",
                            st.backfills[i].status.name()
                        ),
                    );
                }
                None => {
                    return error_response(api, 400, &format!("backfill {id} does not exist"));
                }
            }
        }
    };
    let grace = if backfill.is_some() {
        None
    } else {
        st.orb_grace
    };
    let mut failures = Vec::new();
    let mut valid = Vec::new();
    for event in events {
        let (mut errors, ts) = orb_event_errors(event);
        let key = event.get("idempotency_key").and_then(Value::as_str);
        if let Some(k) = key
            && (st.orb_reject.contains(k) || st.poison.contains(k))
        {
            errors.push(format!(
                "Event {k} failed validation (rejected by the test server)"
            ));
        }
        if let (Some(g), Some(ts)) = (grace, ts) {
            if ts < now - g.as_millis() as i64 {
                errors.push(format!(
                    "Event timestamp is older than the grace period of {} seconds; ingest it through a backfill",
                    g.as_secs()
                ));
            } else if ts > now + ORB_FUTURE_LIMIT_MS {
                errors.push("Event timestamp is more than 5 minutes in the future".into());
            }
        }
        if let Some(i) = backfill {
            let bf = &st.backfills[i];
            if let Some(ts) = ts
                && !(bf.start_ms <= ts && ts < bf.end_ms)
            {
                errors.push(format!(
                    "Event timestamp is outside the timeframe of backfill {} ({} inclusive to {} exclusive)",
                    bf.id,
                    fmt_ms(bf.start_ms),
                    fmt_ms(bf.end_ms)
                ));
            }
            // The API reference is silent on events of other customers than a scoped backfill's:
            // they fail validation here (the stricter choice).
            if !bf.customer_in_scope(event) {
                errors.push(format!(
                    "Event customer is outside the scope of backfill {}",
                    bf.id
                ));
            }
        }
        if errors.is_empty() {
            valid.push(event);
        } else {
            failures.push(json!({
                "idempotency_key": event.get("idempotency_key").cloned().unwrap_or(Value::Null),
                "validation_errors": errors,
            }));
        }
    }
    if failures.is_empty() {
        for event in events {
            orb_accept(&mut st, backfill, true, event);
        }
        return Response::json(200, &json!({ "validation_failed": [] }));
    }
    // Whether the valid events of a 4xx batch are ingested is unconfirmed: configurable with
    // `orb_reject_keys(.., ingest_valid)`, default not ingested.
    if st.orb_ingest_valid {
        for event in valid {
            orb_accept(&mut st, backfill, false, event);
        }
    }
    match st.orb_shape {
        OrbFailureShape::ValidationFailed => {
            Response::json(400, &json!({ "validation_failed": failures }))
        }
        OrbFailureShape::Rfc7807 => {
            let (slug, title) = orb_error_type(400);
            Response::json(
                400,
                &json!({
                    "status": 400,
                    "type": format!("https://docs.withorb.com/reference/error-responses#{slug}"),
                    "title": title,
                    "detail": format!("{} of {} events failed validation", failures.len(), events.len()),
                    "validation_errors": failures,
                }),
            )
        }
    }
}

/// Ingest one valid Orb event, through ordinary ingest or into the backfill at `backfill`.
///
/// Into a backfill, an event whose key is already ingested is a duplicate (dropped) when that copy
/// went to the same backfill, or when the backfill does not replace existing events. When it does
/// (`replace_existing_events: true`) and the existing copy lies in the backfill's timeframe and
/// scope, the new event replaces it at once (the old copy is kept to be restored by a revert):
/// it would be replaced at close anyway. `events_ingested` counts the events actually ingested.
fn orb_accept(st: &mut State, backfill: Option<usize>, count_delivery: bool, event: &Value) {
    let key = event["idempotency_key"].as_str().map(str::to_string);
    let (Some(i), Some(key)) = (backfill, key.as_deref()) else {
        record_acceptance(st, key.as_deref(), count_delivery, false, event.clone());
        return;
    };
    let id = st.backfills[i].id.clone();
    if st.backfills[i].replace && st.event_backfill.get(key) != Some(&id) {
        let bf = &st.backfills[i];
        let replaceable = st
            .ingested
            .iter()
            .find(|e| e["idempotency_key"].as_str() == Some(key))
            .is_some_and(|e| bf.replaces(e));
        if replaceable {
            let old = forget_where(st, |e| e["idempotency_key"].as_str() == Some(key));
            st.backfills[i].replaced.extend(old);
        }
    }
    if record_acceptance(st, Some(key), count_delivery, false, event.clone()) {
        st.event_backfill.insert(key.to_string(), id);
        st.backfills[i].events_ingested += 1;
    }
}

// ---------------------------------------------------------------------------------------------
// Orb backfills

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BackfillStatus {
    Pending,
    /// Closed; this many more reads show `reflecting` (see `orb_backfill_reflect_after_polls`).
    Reflecting(usize),
    Reflected,
    /// Reverted; this many more reads show `pending_revert`.
    PendingRevert(usize),
    Reverted,
}

impl BackfillStatus {
    fn name(self) -> &'static str {
        match self {
            BackfillStatus::Pending => "pending",
            BackfillStatus::Reflecting(_) => "reflecting",
            BackfillStatus::Reflected => "reflected",
            BackfillStatus::PendingRevert(_) => "pending_revert",
            BackfillStatus::Reverted => "reverted",
        }
    }
}

struct Backfill {
    id: String,
    status: BackfillStatus,
    created_at_ms: i64,
    start_ms: i64,
    end_ms: i64,
    close_ms: i64,
    reverted_at_ms: Option<i64>,
    events_ingested: usize,
    replace: bool,
    customer_id: Option<String>,
    external_customer_id: Option<String>,
    /// Events this backfill replaced (with the backfill each had gone to), restored by a revert.
    replaced: Vec<(Value, Option<String>)>,
}

impl Backfill {
    fn to_json(&self) -> Value {
        // `customer_id` would be Orb's id of the customer named by `external_customer_id`; this
        // server knows no Orb customers, so it is null unless the backfill was created with one.
        json!({
            "id": self.id,
            "status": self.status.name(),
            "created_at": fmt_ms(self.created_at_ms),
            "timeframe_start": fmt_ms(self.start_ms),
            "timeframe_end": fmt_ms(self.end_ms),
            "close_time": fmt_ms(self.close_ms),
            "reverted_at": self.reverted_at_ms.map(fmt_ms),
            "events_ingested": self.events_ingested,
            "replace_existing_events": self.replace,
            "customer_id": self.customer_id,
            "external_customer_id": self.external_customer_id,
        })
    }

    /// Whether the event's customer is in this backfill's scope (no customer: all customers).
    fn customer_in_scope(&self, event: &Value) -> bool {
        match (&self.customer_id, &self.external_customer_id) {
            (Some(c), _) => event["customer_id"].as_str() == Some(c.as_str()),
            (None, Some(x)) => event["external_customer_id"].as_str() == Some(x.as_str()),
            (None, None) => true,
        }
    }

    /// Whether `replace_existing_events` replaces this (ingested, not ours) event: inside the
    /// timeframe and the scope.
    fn replaces(&self, event: &Value) -> bool {
        let ts = event["timestamp"]
            .as_str()
            .and_then(|s| orb_timestamp_ms(s).ok());
        self.replace
            && ts.is_some_and(|t| self.start_ms <= t && t < self.end_ms)
            && self.customer_in_scope(event)
    }
}

fn fmt_ms(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn backfill_index(st: &State, id: &str) -> Option<usize> {
    st.backfills.iter().position(|b| b.id == id)
}

fn no_backfill(id: &str) -> Response {
    error_response(Api::Orb, 404, &format!("backfill {id} does not exist"))
}

/// The backfill as a read shows it; the read counts as one poll (see
/// `orb_backfill_reflect_after_polls`).
fn read_backfill(bf: &mut Backfill) -> Value {
    let shown = bf.to_json();
    bf.status = match bf.status {
        BackfillStatus::Reflecting(n) if n > 1 => BackfillStatus::Reflecting(n - 1),
        BackfillStatus::Reflecting(_) => BackfillStatus::Reflected,
        BackfillStatus::PendingRevert(n) if n > 1 => BackfillStatus::PendingRevert(n - 1),
        BackfillStatus::PendingRevert(_) => BackfillStatus::Reverted,
        other => other,
    };
    shown
}

/// Orb closes a pending backfill by itself at its `close_time`. Done lazily, whenever backfills
/// are looked at, so that no timer thread is needed.
fn orb_settle_backfills(st: &mut State, now: i64) {
    for i in 0..st.backfills.len() {
        if st.backfills[i].status == BackfillStatus::Pending && st.backfills[i].close_ms <= now {
            close_backfill(st, i);
        }
    }
}

/// Close: `replace_existing_events` takes effect (the other events of the timeframe and scope
/// leave `ingested()`, kept for a revert), and the status goes to `reflecting`/`reflected`.
fn close_backfill(st: &mut State, i: usize) {
    let polls = st.backfill_reflect_after;
    let id = st.backfills[i].id.clone();
    if st.backfills[i].replace {
        let bf = &st.backfills[i];
        let others: HashSet<String> = st
            .ingested
            .iter()
            .filter(|e| {
                let key = e["idempotency_key"].as_str().unwrap_or("");
                st.event_backfill.get(key) != Some(&id) && bf.replaces(e)
            })
            .filter_map(|e| e["idempotency_key"].as_str().map(str::to_string))
            .collect();
        let old = forget_where(st, |e| {
            e["idempotency_key"]
                .as_str()
                .is_some_and(|k| others.contains(k))
        });
        st.backfills[i].replaced.extend(old);
    }
    st.backfills[i].status = match polls {
        0 => BackfillStatus::Reflected,
        n => BackfillStatus::Reflecting(n),
    };
}

/// Revert: the backfill's events leave `ingested()`, the events it replaced come back (at the
/// end, unless their key was ingested again meanwhile), and the status goes to
/// `pending_revert`/`reverted`.
fn revert_backfill(st: &mut State, i: usize, now: i64) {
    let polls = st.backfill_reflect_after;
    let id = st.backfills[i].id.clone();
    let ours: HashSet<String> = st
        .event_backfill
        .iter()
        .filter(|(_, b)| **b == id)
        .map(|(k, _)| k.clone())
        .collect();
    forget_where(st, |e| {
        e["idempotency_key"]
            .as_str()
            .is_some_and(|k| ours.contains(k))
    });
    for (event, backfill) in std::mem::take(&mut st.backfills[i].replaced) {
        let key = event["idempotency_key"].as_str().map(str::to_string);
        if record_acceptance(st, key.as_deref(), false, false, event)
            && let (Some(k), Some(b)) = (key, backfill)
        {
            st.event_backfill.insert(k, b);
        }
    }
    let bf = &mut st.backfills[i];
    bf.reverted_at_ms = Some(now);
    bf.status = match polls {
        0 => BackfillStatus::Reverted,
        n => BackfillStatus::PendingRevert(n),
    };
}

/// A required Orb timestamp field, or an optional one (`None` when absent or null).
fn orb_time_field(
    o: &Map<String, Value>,
    key: &str,
    required: bool,
) -> Result<Option<i64>, String> {
    match o.get(key) {
        None | Some(Value::Null) if required => Err(format!("{key} is required")),
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => orb_timestamp_ms(s)
            .map(Some)
            .map_err(|e| format!("{key}: {e}")),
        Some(_) => Err(format!("{key} must be an ISO 8601 string")),
    }
}

/// An optional non-empty string field (`None` when absent or null).
fn optional_id(o: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(_) => Err(format!("{key} must be a non-empty string")),
    }
}

/// `POST /v1/events/backfills`. Timestamps use the same format as event timestamps (UTC with
/// `Z`, at most millisecond precision) and are shown normalised (`2021-04-26T00:00:00Z`).
/// Unknown keys (such as Orb's `deprecation_filter`) are ignored. The answer is 200 (Orb's
/// status for a create is not documented; a client should accept any 2xx).
fn orb_create_backfill(shared: &Shared, req: &Request) -> Response {
    let api = Api::Orb;
    let body = match parse_json(api, req) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let checked = (|| -> Result<_, String> {
        let o = body.as_object().ok_or("the body must be a JSON object")?;
        let start = orb_time_field(o, "timeframe_start", true)?.unwrap_or(0);
        let end = orb_time_field(o, "timeframe_end", true)?.unwrap_or(0);
        if start >= end {
            return Err("timeframe_start must be before timeframe_end".into());
        }
        if end - start > ORB_BACKFILL_MAX_SPAN_MS {
            return Err("a backfill may span at most 31 days".into());
        }
        let customer_id = optional_id(o, "customer_id")?;
        let external_customer_id = optional_id(o, "external_customer_id")?;
        if customer_id.is_some() && external_customer_id.is_some() {
            return Err("at most one of customer_id and external_customer_id may be set".into());
        }
        // Orb defaults replace_existing_events to false; this server requires it, since
        // segrelay must always send it explicitly.
        let replace = match o.get("replace_existing_events") {
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err("replace_existing_events must be a boolean".into()),
            None => return Err("replace_existing_events is required by this test server".into()),
        };
        // A close_time in the past is accepted: the backfill closes at the next look.
        let close = orb_time_field(o, "close_time", false)?;
        Ok((
            start,
            end,
            customer_id,
            external_customer_id,
            replace,
            close,
        ))
    })();
    let (start, end, customer_id, external_customer_id, replace, close) = match checked {
        Ok(c) => c,
        Err(why) => return error_response(api, 400, &why),
    };
    let now = now_ms();
    let mut st = shared.lock();
    orb_settle_backfills(&mut st, now);
    // Only pending backfills conflict, whatever their customer scope (Orb: "must not
    // overlap in time"). A refusal for the state of things is a 400 constraint violation: Orb's
    // 409 means an idempotency conflict, which its SDKs retry.
    let overlapping = st
        .backfills
        .iter()
        .find(|b| b.status == BackfillStatus::Pending && b.start_ms < end && start < b.end_ms);
    if let Some(b) = overlapping {
        return orb_constraint_violation(&format!(
            "the timeframe overlaps pending backfill {} ({} to {}); close it or wait until it is reflected",
            b.id,
            fmt_ms(b.start_ms),
            fmt_ms(b.end_ms)
        ));
    }
    let bf = Backfill {
        id: format!("bf_{}", st.backfills.len() + 1),
        status: BackfillStatus::Pending,
        created_at_ms: now,
        start_ms: start,
        end_ms: end,
        close_ms: close.unwrap_or(now + ORB_BACKFILL_DEFAULT_CLOSE_MS),
        reverted_at_ms: None,
        events_ingested: 0,
        replace,
        customer_id,
        external_customer_id,
        replaced: Vec::new(),
    };
    let shown = bf.to_json();
    st.backfills.push(bf);
    Response::json(200, &shown)
}

/// `GET /v1/events/backfills?limit=&cursor=`, in creation order. `limit` must be 1 to 100
/// (400 otherwise, rather than clamped); the cursor is opaque (the next position) and an
/// unknown one gets 400. Each backfill on the page counts as read once (a poll).
fn orb_list_backfills(shared: &Shared, req: &Request) -> Response {
    let api = Api::Orb;
    let limit = match query_param(&req.query, "limit") {
        None => ORB_LIST_DEFAULT_LIMIT,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=ORB_LIST_MAX_LIMIT).contains(&n) => n,
            _ => {
                return error_response(
                    api,
                    400,
                    &format!("limit must be an integer from 1 to {ORB_LIST_MAX_LIMIT}"),
                );
            }
        },
    };
    let mut st = shared.lock();
    orb_settle_backfills(&mut st, now_ms());
    let from = match query_param(&req.query, "cursor").filter(|c| !c.is_empty()) {
        None => 0,
        Some(c) => match c.strip_prefix("pos_").and_then(|n| n.parse::<usize>().ok()) {
            Some(n) if n <= st.backfills.len() => n,
            _ => return error_response(api, 400, &format!("invalid cursor {c:?}")),
        },
    };
    let to = (from + limit).min(st.backfills.len());
    let data: Vec<Value> = st.backfills[from..to]
        .iter_mut()
        .map(read_backfill)
        .collect();
    let has_more = to < st.backfills.len();
    Response::json(
        200,
        &json!({
            "data": data,
            "pagination_metadata": {
                "has_more": has_more,
                "next_cursor": has_more.then(|| format!("pos_{to}")),
            },
        }),
    )
}

/// `POST .../close` (only a pending backfill) and `POST .../revert` (a pending, reflecting or
/// reflected one); otherwise 400 constraint violation (Orb's reference lists it for both
/// endpoints and is silent on the case; its 409 means an idempotency conflict, which its SDKs
/// retry). A close sets `close_time` to now (Orb: "if in the past, the time at which the backfill
/// was closed"). A pending backfill that is reverted goes through `pending_revert` like the others
/// (the same poll rule).
fn orb_close_or_revert(shared: &Shared, id: &str, revert: bool) -> Response {
    let now = now_ms();
    let mut st = shared.lock();
    orb_settle_backfills(&mut st, now);
    let Some(i) = backfill_index(&st, id) else {
        return no_backfill(id);
    };
    let status = st.backfills[i].status;
    let allowed = match (revert, status) {
        (false, BackfillStatus::Pending) => true,
        (false, _) => false,
        (true, BackfillStatus::PendingRevert(_) | BackfillStatus::Reverted) => false,
        (true, _) => true,
    };
    if !allowed {
        let what = if revert { "reverted" } else { "closed" };
        return orb_constraint_violation(&format!(
            "backfill {id} is {} and cannot be {what}",
            status.name()
        ));
    }
    if revert {
        revert_backfill(&mut st, i, now);
    } else {
        st.backfills[i].close_ms = now;
        close_backfill(&mut st, i);
    }
    Response::json(200, &st.backfills[i].to_json())
}

// ---------------------------------------------------------------------------------------------
// Orb event search

/// `POST /v1/events/search`: the ingested events whose idempotency key is in `event_ids` (at most
/// 500) and, when given, whose timestamp is in `[timeframe_start, timeframe_end)`; there is no
/// default timeframe. Events are listed in ingestion order, in one page.
fn orb_search(shared: &Shared, req: &Request) -> Response {
    let api = Api::Orb;
    let body = match parse_json(api, req) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let checked = (|| -> Result<_, String> {
        let o = body.as_object().ok_or("the body must be a JSON object")?;
        let ids: HashSet<&str> = match o.get("event_ids") {
            Some(Value::Array(a)) => {
                if a.len() > ORB_SEARCH_MAX_IDS {
                    return Err(format!(
                        "{} event_ids; at most {ORB_SEARCH_MAX_IDS} are allowed",
                        a.len()
                    ));
                }
                a.iter()
                    .map(|v| v.as_str().ok_or("event_ids must be strings"))
                    .collect::<Result<_, _>>()?
            }
            Some(_) => return Err("event_ids must be an array of strings".into()),
            None => return Err("event_ids is required".into()),
        };
        let start = orb_time_field(o, "timeframe_start", false)?;
        let end = orb_time_field(o, "timeframe_end", false)?;
        if let (Some(s), Some(e)) = (start, end)
            && s >= e
        {
            return Err("timeframe_start must be before timeframe_end".into());
        }
        Ok((ids, start, end))
    })();
    let (ids, start, end) = match checked {
        Ok(c) => c,
        Err(why) => return error_response(api, 400, &why),
    };
    let st = shared.lock();
    let data: Vec<Value> = st
        .ingested
        .iter()
        .filter(|e| e["idempotency_key"].as_str().is_some_and(|k| ids.contains(k)))
        .filter(|e| {
            let ts = e["timestamp"].as_str().and_then(|s| orb_timestamp_ms(s).ok());
            ts.is_some_and(|t| start.is_none_or(|s| s <= t) && end.is_none_or(|x| t < x))
        })
        .map(|e| {
            // `customer_id` is Orb's own id: null unless the event was sent with one.
            json!({
                "id": e["idempotency_key"],
                "customer_id": e.get("customer_id").cloned().unwrap_or(Value::Null),
                "external_customer_id": e.get("external_customer_id").cloned().unwrap_or(Value::Null),
                "event_name": e["event_name"],
                "properties": e["properties"],
                "timestamp": e["timestamp"],
                "deprecated": false,
            })
        })
        .collect();
    Response::json(
        200,
        &json!({
            "data": data,
            "pagination_metadata": {"has_more": false, "next_cursor": null},
        }),
    )
}

/// The validation errors of one Orb event, and its time in epoch ms when it is valid.
fn orb_event_errors(event: &Value) -> (Vec<String>, Option<i64>) {
    let Some(o) = event.as_object() else {
        return (vec!["The event must be a JSON object".into()], None);
    };
    let mut errors = Vec::new();
    for key in ["idempotency_key", "event_name"] {
        if let Err(e) = non_empty_str(o, key) {
            errors.push(e);
        }
    }
    let ts = match o.get("timestamp") {
        Some(Value::String(s)) => match orb_timestamp_ms(s) {
            Ok(ms) => Some(ms),
            Err(e) => {
                errors.push(e);
                None
            }
        },
        Some(_) => {
            errors.push("timestamp must be a string".into());
            None
        }
        None => {
            errors.push("timestamp is required".into());
            None
        }
    };
    match o.get("properties") {
        Some(Value::Object(props)) => {
            for (k, v) in props {
                match v {
                    Value::String(_) | Value::Number(_) | Value::Bool(_) => {}
                    Value::Null => errors.push(format!("properties.{k} must not be null")),
                    _ => errors.push(format!(
                        "properties.{k} must be a string, number or boolean (nested objects and arrays are not allowed)"
                    )),
                }
            }
        }
        Some(_) => errors.push("properties must be an object".into()),
        None => errors.push("properties is required".into()),
    }
    // `customer_id` must name an existing Orb customer; this server knows no customers and
    // accepts any non-empty string.
    let ext = o.get("external_customer_id").filter(|v| !v.is_null());
    let cust = o.get("customer_id").filter(|v| !v.is_null());
    match (ext, cust) {
        (Some(_), Some(_)) => {
            errors.push("exactly one of external_customer_id and customer_id may be set".into())
        }
        (None, None) => {
            errors.push("one of external_customer_id and customer_id is required".into())
        }
        (Some(v), None) | (None, Some(v)) => {
            if v.as_str().is_none_or(str::is_empty) {
                let which = if ext.is_some() {
                    "external_customer_id"
                } else {
                    "customer_id"
                };
                errors.push(format!("{which} must be a non-empty string"));
            }
        }
    }
    (errors, ts)
}

/// ISO 8601 in UTC ending in `Z`, at most millisecond precision: `YYYY-MM-DDTHH:MM:SS[.s{1,3}]Z`.
fn orb_timestamp_ms(s: &str) -> Result<i64, String> {
    let b = s.as_bytes();
    let shape = b"dddd-dd-ddTdd:dd:dd";
    let shape_ok = b.len() > shape.len()
        && b.last() == Some(&b'Z')
        && shape.iter().zip(b).all(|(p, c)| {
            if *p == b'd' {
                c.is_ascii_digit()
            } else {
                p == c
            }
        });
    if !shape_ok {
        return Err(format!(
            "timestamp {s:?} must be ISO 8601 in UTC such as 2020-12-09T16:09:53Z"
        ));
    }
    let fraction = &b[shape.len()..b.len() - 1];
    if !fraction.is_empty() {
        if fraction[0] != b'.'
            || fraction.len() < 2
            || !fraction[1..].iter().all(u8::is_ascii_digit)
        {
            return Err(format!(
                "timestamp {s:?} must be ISO 8601 in UTC such as 2020-12-09T16:09:53Z"
            ));
        }
        if fraction.len() > 4 {
            return Err(format!(
                "timestamp {s:?} has more than millisecond precision"
            ));
        }
    }
    s.parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond())
        .map_err(|e| format!("timestamp {s:?} is not a valid date: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Kable

fn kable(shared: &Shared, req: &Request) -> Response {
    let api = Api::Kable;
    if !(req.method == "POST" && req.path == "/api/v1/events/create") {
        return not_found(api, req);
    }
    let authorized = req.header("kable-client-id") == Some(KABLE_CLIENT_ID)
        && req.header("kable-client-secret") == Some(shared.api_key.as_str());
    if !authorized {
        return Response::json(401, &json!({ "message": "Unauthorized" }));
    }
    let body = match parse_json(api, req) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Value::Array(events) = body else {
        return error_response(api, 400, "the body must be a JSON array of events");
    };
    let mut st = shared.lock();
    if let Some(r) = too_many(api, &st, events.len()) {
        return r;
    }
    for (i, event) in events.iter().enumerate() {
        if let Err(why) = validate_kable_event(event) {
            return error_response(api, 400, &format!("Invalid event at index {i}: {why}"));
        }
    }
    let poisoned = events.iter().find_map(|e| {
        e.get("transactionId")
            .and_then(Value::as_str)
            .filter(|k| st.poison.contains(*k))
    });
    if let Some(key) = poisoned {
        return error_response(api, 400, &format!("Event {key} could not be processed"));
    }
    for event in events {
        let key = event
            .get("transactionId")
            .and_then(Value::as_str)
            .map(str::to_string);
        record_acceptance(&mut st, key.as_deref(), true, false, event);
    }
    Response::empty(200)
}

fn validate_kable_event(event: &Value) -> Result<(), String> {
    let o = event.as_object().ok_or("an event must be a JSON object")?;
    non_empty_str(o, "clientId")?;
    let ts = match o.get("timestamp") {
        Some(Value::String(s)) => s,
        Some(_) => return Err("timestamp must be a string".into()),
        None => return Err("timestamp is required".into()),
    };
    if !is_rfc3339(ts) {
        return Err(format!("timestamp {ts:?} is not RFC 3339"));
    }
    optional_str(o, "transactionId")?;
    match o.get("data") {
        Some(Value::Object(_)) => Ok(()),
        Some(_) => Err("data must be an object".into()),
        None => Err("data is required".into()),
    }
}

/// RFC 3339: `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let shape = b"dddd-dd-ddTdd:dd:dd";
    if b.len() <= shape.len() {
        return false;
    }
    let head_ok = shape.iter().zip(b).all(|(p, c)| match p {
        b'd' => c.is_ascii_digit(),
        b'T' => *c == b'T' || *c == b't',
        _ => p == c,
    });
    let offset_ok = if matches!(b.last(), Some(b'Z' | b'z')) {
        true
    } else {
        let n = b.len();
        n >= shape.len() + 6
            && matches!(b[n - 6], b'+' | b'-')
            && b[n - 5].is_ascii_digit()
            && b[n - 4].is_ascii_digit()
            && b[n - 3] == b':'
            && b[n - 2].is_ascii_digit()
            && b[n - 1].is_ascii_digit()
    };
    head_ok && offset_ok && s.parse::<jiff::Timestamp>().is_ok()
}
