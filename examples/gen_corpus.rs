//! Writes a deterministic corpus of realistic Segment events as NDJSON, for the
//! benchmarks in `benches/run.sh`.
//!
//! ```sh
//! cargo run --release --example gen_corpus -- --mb 200 --seed 42 --out /tmp/corpus.ndjson
//! ```
//!
//! About 600 bytes an event on average, with a `context` (library, ip,
//! userAgent, page or app/device/os, locale, timezone), all call types (mostly
//! track; some page, screen, identify and group), properties with numbers,
//! nested objects and arrays, a `messageId` and timestamps in the ISO forms seen
//! in real Segment data. `--mb` counts megabytes of 10^6 bytes; the file ends
//! at the first line that reaches the size. The same seed writes the same bytes.
//!
//! Events start at 2024-05-01 and are about 0.2 s apart; `--days D` spreads
//! them over about D days instead (a year of events in a small file).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::process::ExitCode;

/// A JSON value whose objects keep the order they are written in (serde_json's
/// `Value` sorts keys, and real events are not sorted).
enum J {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(&'static str, J)>),
}

impl J {
    fn write(&self, out: &mut Vec<u8>) {
        match self {
            J::Null => out.extend_from_slice(b"null"),
            J::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            J::Int(i) => out.extend_from_slice(i.to_string().as_bytes()),
            J::Float(f) => serde_json::to_writer(&mut *out, f).expect("writing to a Vec"),
            J::Str(s) => serde_json::to_writer(&mut *out, s).expect("writing to a Vec"),
            J::Arr(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    item.write(out);
                }
                out.push(b']');
            }
            J::Obj(fields) => {
                out.push(b'{');
                for (i, (key, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    serde_json::to_writer(&mut *out, key).expect("writing to a Vec");
                    out.push(b':');
                    value.write(out);
                }
                out.push(b'}');
            }
        }
    }
}

fn s(text: impl Into<String>) -> J {
    J::Str(text.into())
}

const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 Safari/537.36 Edg/123.0.2420.81",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "analytics-node-next/latest",
    "Go-http-client/1.1",
];
const LIBRARIES: &[(&str, &str)] = &[
    ("analytics.js", "next-1.64.0"),
    ("analytics-node", "2.1.0"),
    ("analytics-go", "3.3.0"),
    ("analytics-python", "2.3.2"),
    ("analytics-ruby", "2.4.3"),
];
const LOCALES: &[&str] = &[
    "en-US", "en-GB", "de-DE", "fr-FR", "ja-JP", "pt-BR", "es-ES",
];
const TIMEZONES: &[&str] = &[
    "America/New_York",
    "America/Los_Angeles",
    "Europe/Berlin",
    "Europe/London",
    "Asia/Tokyo",
    "America/Sao_Paulo",
];
const PATHS: &[(&str, &str)] = &[
    ("/", "Home | Initech"),
    ("/pricing", "Pricing | Initech"),
    ("/docs/getting-started", "Getting started | Initech Docs"),
    ("/dashboard", "Dashboard | Initech"),
    ("/settings/billing", "Billing settings | Initech"),
    (
        "/blog/2024/05/usage-based-billing",
        "Usage-based billing, explained",
    ),
];
const REFERRERS: &[&str] = &[
    "https://www.google.com/",
    "https://news.ycombinator.com/",
    "",
    "https://twitter.com/initech",
    "https://duckduckgo.com/",
];
const REGIONS: &[&str] = &[
    "us-east-1",
    "us-west-2",
    "eu-west-1",
    "eu-central-1",
    "ap-northeast-1",
];
const MODELS: &[&str] = &[
    "gpt-4o",
    "gpt-4o-mini",
    "claude-3-5-sonnet",
    "llama-3-70b",
    "mistral-large",
];
const ENDPOINTS: &[&str] = &[
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/files",
    "/v2/search",
    "/v1/images/generations",
];
const PLANS: &[&str] = &["free", "starter", "growth", "enterprise"];
const SCREENS: &[&str] = &[
    "Home",
    "Search Results",
    "Product Detail",
    "Cart",
    "Checkout",
    "Settings",
];
const CATEGORIES: &[&str] = &[
    "Office Supplies",
    "Staplers",
    "Paper",
    "Printers",
    "Furniture",
];

struct Gen {
    rng: fastrand::Rng,
    /// Milliseconds since the epoch of the current event; moves forward.
    clock: i64,
    /// The clock moves by less than this many milliseconds an event.
    step: u32,
}

impl Gen {
    fn pick<'a, T: ?Sized>(&mut self, items: &'a [&'a T]) -> &'a T {
        items[self.rng.usize(..items.len())]
    }

    fn hex(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from_digit(self.rng.u32(..16), 16).expect("a hex digit"))
            .collect()
    }

    fn uuid(&mut self) -> String {
        format!(
            "{}-{}-4{}-{}-{}",
            self.hex(8),
            self.hex(4),
            self.hex(3),
            self.hex(4),
            self.hex(12)
        )
    }

    /// A time in one of the forms seen in Segment data, mostly `...sssZ`.
    fn iso(&mut self, millis: i64) -> String {
        let at = jiff::Timestamp::from_millisecond(millis).expect("a time in range");
        match self.rng.u32(..100) {
            0..=64 => at.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            65..=74 => at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
            75..=84 => {
                // RFC 3339 with an offset, as analytics.js writes local times.
                let hours = [2i64, 1, -5, -8, 9][self.rng.usize(..5)];
                let local = jiff::Timestamp::from_millisecond(millis + hours * 3_600_000)
                    .expect("a time in range");
                let sign = if hours < 0 { '-' } else { '+' };
                format!(
                    "{}{sign}{:02}:00",
                    local.strftime("%Y-%m-%dT%H:%M:%S%.3f"),
                    hours.abs()
                )
            }
            85..=92 => {
                // Nanoseconds, as Go and .NET write them.
                let extra = self.rng.u32(..1_000_000);
                format!("{}{extra:06}Z", at.strftime("%Y-%m-%dT%H:%M:%S%.3f"))
            }
            93..=96 => {
                // A basic offset without a colon (`-0700`): not RFC 3339.
                let local =
                    jiff::Timestamp::from_millisecond(millis - 7 * 3_600_000).expect("in range");
                format!("{}-0700", local.strftime("%Y-%m-%dT%H:%M:%S%.3f"))
            }
            _ => at.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        }
    }

    fn user_id(&mut self) -> J {
        let n = self.rng.u32(1..20_000);
        if self.rng.u32(..100) == 0 {
            J::Int(i64::from(n))
        } else {
            s(format!("user_{n:05}"))
        }
    }

    /// A browser's context (analytics.js: page, userAgent, locale...) or a
    /// server library's (library, ip, sometimes a locale).
    fn web_context(&mut self, browser: bool) -> J {
        let ip = format!(
            "{}.{}.{}.{}",
            self.rng.u8(1..224),
            self.rng.u8(..),
            self.rng.u8(..),
            self.rng.u8(1..255)
        );
        if !browser {
            let (name, version) = LIBRARIES[1 + self.rng.usize(..LIBRARIES.len() - 1)];
            let mut fields = vec![
                (
                    "library",
                    J::Obj(vec![("name", s(name)), ("version", s(version))]),
                ),
                ("ip", s(ip)),
            ];
            if self.rng.bool() {
                fields.push(("locale", s(self.pick(LOCALES))));
            }
            return J::Obj(fields);
        }
        let (name, version) = LIBRARIES[0];
        let (path, title) = PATHS[self.rng.usize(..PATHS.len())];
        let referrer = self.pick(REFERRERS);
        J::Obj(vec![
            (
                "library",
                J::Obj(vec![("name", s(name)), ("version", s(version))]),
            ),
            ("ip", s(ip)),
            ("userAgent", s(self.pick(USER_AGENTS))),
            (
                "page",
                J::Obj(vec![
                    ("path", s(path)),
                    ("referrer", s(referrer)),
                    ("title", s(title)),
                    ("url", s(format!("https://www.initech.com{path}"))),
                ]),
            ),
            ("locale", s(self.pick(LOCALES))),
        ])
    }

    fn mobile_context(&mut self) -> J {
        let ios = self.rng.bool();
        J::Obj(vec![
            (
                "app",
                J::Obj(vec![
                    ("name", s("Initech")),
                    (
                        "version",
                        s(format!("5.{}.{}", self.rng.u8(..20), self.rng.u8(..10))),
                    ),
                    ("build", s(format!("{}", self.rng.u32(1000..9999)))),
                ]),
            ),
            (
                "device",
                J::Obj(vec![
                    ("id", s(self.uuid())),
                    ("manufacturer", s(if ios { "Apple" } else { "Google" })),
                    ("model", s(if ios { "iPhone15,3" } else { "Pixel 8" })),
                    ("type", s(if ios { "ios" } else { "android" })),
                ]),
            ),
            (
                "library",
                J::Obj(vec![
                    (
                        "name",
                        s(if ios {
                            "analytics-ios"
                        } else {
                            "analytics-android"
                        }),
                    ),
                    ("version", s("4.1.8")),
                ]),
            ),
            (
                "os",
                J::Obj(vec![
                    ("name", s(if ios { "iOS" } else { "Android" })),
                    ("version", s(if ios { "17.4.1" } else { "14" })),
                ]),
            ),
            (
                "network",
                J::Obj(vec![
                    ("wifi", J::Bool(self.rng.bool())),
                    ("cellular", J::Bool(self.rng.bool())),
                ]),
            ),
            ("locale", s(self.pick(LOCALES))),
            ("timezone", s(self.pick(TIMEZONES))),
        ])
    }

    fn track_properties(&mut self, name: &str) -> J {
        let rng = &mut self.rng;
        match name {
            "API Call" => J::Obj(vec![
                ("endpoint", s(ENDPOINTS[rng.usize(..ENDPOINTS.len())])),
                ("method", s(if rng.bool() { "POST" } else { "GET" })),
                (
                    "status",
                    J::Int([200, 200, 200, 201, 429, 500][rng.usize(..6)]),
                ),
                ("latency_ms", J::Float(f64::from(rng.u32(5..5000)) / 10.0)),
                ("value", J::Int(i64::from(rng.u32(1..10)))),
                ("region", s(REGIONS[rng.usize(..REGIONS.len())])),
                ("model", s(MODELS[rng.usize(..MODELS.len())])),
                (
                    "usage",
                    J::Obj(vec![
                        ("tokens", J::Int(i64::from(rng.u32(1..20_000)))),
                        ("cached", J::Bool(rng.bool())),
                    ]),
                ),
            ]),
            "tokens_used" => {
                let prompt = rng.u32(1..8000);
                let completion = rng.u32(1..4000);
                J::Obj(vec![
                    ("value", s((prompt + completion).to_string())),
                    ("model", s(MODELS[rng.usize(..MODELS.len())])),
                    ("region", s(REGIONS[rng.usize(..REGIONS.len())])),
                    (
                        "usage",
                        J::Obj(vec![
                            ("tokens", J::Int(i64::from(prompt + completion))),
                            ("prompt_tokens", J::Int(i64::from(prompt))),
                            ("completion_tokens", J::Int(i64::from(completion))),
                        ]),
                    ),
                    ("segmentX", s("important data point")),
                    ("tags", J::Arr(vec![s("api"), s("beta")])),
                ])
            }
            "Order Completed" => {
                let count = rng.usize(1..3);
                let products: Vec<J> = (0..count)
                    .map(|i| {
                        J::Obj(vec![
                            ("product_id", s(format!("p{}", rng.u32(100..999)))),
                            ("sku", s(format!("SKU-{}", rng.u32(1000..9999)))),
                            ("price", J::Float(f64::from(rng.u32(99..9999)) / 100.0)),
                            ("quantity", J::Int(i64::from(rng.u32(1..4)))),
                            ("position", J::Int(i as i64 + 1)),
                        ])
                    })
                    .collect();
                J::Obj(vec![
                    ("order_id", s(format!("ord_{}", rng.u32(..1_000_000)))),
                    ("total", J::Float(f64::from(rng.u32(500..50_000)) / 100.0)),
                    ("revenue", J::Float(f64::from(rng.u32(500..40_000)) / 100.0)),
                    ("currency", s("USD")),
                    ("coupon", if rng.bool() { J::Null } else { s("SPRING24") }),
                    ("products", J::Arr(products)),
                ])
            }
            "Product Viewed" => J::Obj(vec![
                ("product_id", s(format!("p{}", rng.u32(100..999)))),
                ("category", s(CATEGORIES[rng.usize(..CATEGORIES.len())])),
                ("name", s("Red Swingline Stapler")),
                ("price", J::Float(f64::from(rng.u32(99..9999)) / 100.0)),
                ("currency", s("USD")),
                ("tags", J::Arr(vec![s("office"), s("red"), J::Int(2024)])),
            ]),
            _ => J::Obj(vec![
                ("value", J::Float(f64::from(rng.u32(1..100_000)) / 1000.0)),
                ("region", s(REGIONS[rng.usize(..REGIONS.len())])),
                ("bucket", s(format!("bucket-{}", rng.u32(..500)))),
                ("storage_class", s("STANDARD")),
            ]),
        }
    }

    /// The fields every call shares: ids, times, integrations.
    fn common(
        &mut self,
        call: &'static str,
        anonymous_only: bool,
        browser: bool,
    ) -> Vec<(&'static str, J)> {
        self.clock += i64::from(self.rng.u32(..self.step));
        let original = self.clock;
        let sent = original + i64::from(self.rng.u32(..2000));
        let received = sent + i64::from(self.rng.u32(..800));
        let mut fields = vec![("type", s(call))];
        if !anonymous_only {
            fields.push(("userId", self.user_id()));
        }
        if browser || anonymous_only {
            let anonymous = self.uuid();
            fields.push(("anonymousId", s(anonymous)));
        }
        let message_id = match self.rng.u32(..3) {
            0 => format!("ajs-next-{}", self.hex(32)),
            _ => self.uuid(),
        };
        fields.push(("messageId", s(message_id)));
        let timestamp = self.iso(original);
        fields.push(("timestamp", s(timestamp)));
        let original = self.iso(original);
        fields.push(("originalTimestamp", s(original)));
        let sent = self.iso(sent);
        fields.push(("sentAt", s(sent)));
        let received = self.iso(received);
        fields.push(("receivedAt", s(received)));
        let integrations = match self.rng.u32(..100) {
            0 => J::Obj(vec![("All", J::Bool(false)), ("Orb", J::Bool(true))]),
            1 => J::Obj(vec![("Amberflo", J::Bool(false))]),
            2..=30 => J::Obj(vec![("All", J::Bool(true))]),
            _ => J::Obj(vec![]),
        };
        fields.push(("integrations", integrations));
        fields
    }

    fn event(&mut self) -> J {
        let roll = self.rng.u32(..100);
        let call = match roll {
            0..=79 => "track",
            80..=87 => "page",
            88..=91 => "screen",
            92..=96 => "identify",
            _ => "group",
        };
        // Some anonymous visitors browsing: page and screen calls without a userId.
        let anonymous_only = matches!(call, "page" | "screen") && self.rng.u32(..100) < 15;
        // Browsers (analytics.js) send every page call and some of the rest;
        // server libraries send most track calls, with a smaller context.
        let browser = call == "page" || self.rng.u32(..100) < 25;
        let mut fields = self.common(call, anonymous_only, browser);
        match call {
            "track" => {
                let name = match self.rng.u32(..10) {
                    0..=3 => "API Call",
                    4..=5 => "tokens_used",
                    6 => "Order Completed",
                    7..=8 => "Product Viewed",
                    _ => "Storage Used",
                };
                fields.insert(1, ("event", s(name)));
                let properties = self.track_properties(name);
                fields.push(("properties", properties));
                let context = self.web_context(browser);
                fields.push(("context", context));
            }
            "page" => {
                let (path, title) = PATHS[self.rng.usize(..PATHS.len())];
                fields.insert(1, ("name", s(title.split(" |").next().unwrap_or(title))));
                let properties = J::Obj(vec![
                    ("path", s(path)),
                    ("referrer", s(self.pick(REFERRERS))),
                    ("search", s("")),
                    ("title", s(title)),
                    ("url", s(format!("https://www.initech.com{path}"))),
                ]);
                fields.push(("properties", properties));
                let context = self.web_context(browser);
                fields.push(("context", context));
            }
            "screen" => {
                fields.insert(1, ("name", s(self.pick(SCREENS))));
                let properties = J::Obj(vec![
                    ("variation", s(if self.rng.bool() { "blue" } else { "red" })),
                    ("load_ms", J::Int(i64::from(self.rng.u32(10..3000)))),
                ]);
                fields.push(("properties", properties));
                let context = self.mobile_context();
                fields.push(("context", context));
            }
            "identify" => {
                let n = self.rng.u32(1..20_000);
                let traits = J::Obj(vec![
                    ("name", s(format!("Peter Gibbons {n}"))),
                    ("email", s(format!("peter.{n}@initech.com"))),
                    ("plan", s(PLANS[self.rng.usize(..PLANS.len())])),
                    ("logins", J::Int(i64::from(self.rng.u32(..500)))),
                    (
                        "company",
                        J::Obj(vec![
                            ("name", s("Initech")),
                            ("employees", J::Int(i64::from(self.rng.u32(10..5000)))),
                        ]),
                    ),
                    ("createdAt", s("2019-03-01T09:00:00.000Z")),
                ]);
                fields.push(("traits", traits));
                let context = self.web_context(browser);
                fields.push(("context", context));
            }
            _ => {
                fields.insert(1, ("groupId", s(format!("org_{}", self.rng.u32(..2000)))));
                let traits = J::Obj(vec![
                    ("name", s("Initech")),
                    ("industry", s("Technology")),
                    ("employees", J::Int(i64::from(self.rng.u32(10..5000)))),
                    ("plan", s(PLANS[self.rng.usize(..PLANS.len())])),
                ]);
                fields.push(("traits", traits));
                let context = self.web_context(browser);
                fields.push(("context", context));
            }
        }
        fields.push(("version", J::Int(2)));
        J::Obj(fields)
    }
}

struct Args {
    megabytes: f64,
    seed: u64,
    out: Option<String>,
    /// `--days`: the span the events cover.
    days: Option<f64>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        megabytes: 10.0,
        seed: 42,
        out: None,
        days: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--mb" => args.megabytes = value("--mb")?.parse().map_err(|e| format!("--mb: {e}"))?,
            "--seed" => {
                args.seed = value("--seed")?
                    .parse()
                    .map_err(|e| format!("--seed: {e}"))?
            }
            "--out" | "-o" => args.out = Some(value("--out")?),
            "--days" => {
                args.days = Some(
                    value("--days")?
                        .parse()
                        .map_err(|e| format!("--days: {e}"))?,
                )
            }
            "-h" | "--help" => {
                return Err(
                    "usage: gen_corpus [--mb N (10)] [--seed S (42)] [--days D] [--out PATH (stdout)]".into(),
                );
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("gen_corpus: {message}");
            return ExitCode::from(2);
        }
    };
    let out: Box<dyn Write> = match &args.out {
        Some(path) => match File::create(path) {
            Ok(file) => Box::new(file),
            Err(e) => {
                eprintln!("gen_corpus: cannot create {path}: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => Box::new(io::stdout().lock()),
    };
    let mut out = BufWriter::with_capacity(1 << 20, out);
    let limit = (args.megabytes * 1e6) as u64;
    let mut generator = Gen {
        rng: fastrand::Rng::with_seed(args.seed),
        // 2024-05-01T00:00:00Z
        clock: 1_714_521_600_000,
        // About 680 bytes an event (as generated): the mean step spreads them over the days.
        step: match args.days {
            None => 400,
            Some(days) => {
                let events = (args.megabytes * 1e6 / 680.0).max(1.0);
                (2.0 * days * 86_400_000.0 / events).clamp(1.0, f64::from(u32::MAX)) as u32
            }
        },
    };
    let mut line = Vec::with_capacity(4096);
    let (mut written, mut events) = (0u64, 0u64);
    while written < limit {
        line.clear();
        generator.event().write(&mut line);
        line.push(b'\n');
        if let Err(e) = out.write_all(&line) {
            eprintln!("gen_corpus: {e}");
            return ExitCode::FAILURE;
        }
        written += line.len() as u64;
        events += 1;
    }
    if let Err(e) = out.flush() {
        eprintln!("gen_corpus: {e}");
        return ExitCode::FAILURE;
    }
    eprintln!(
        "gen_corpus: {events} events, {written} bytes ({:.0} bytes an event), seed {}",
        written as f64 / events.max(1) as f64,
        args.seed
    );
    ExitCode::SUCCESS
}
