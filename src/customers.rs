//! Amberflo customers, with one knowledge of them shared by two paths:
//! `--ensure-customers` (before the first meter record of each customer, look
//! it up and create it when Amberflo does not know it, since records for an
//! unknown customer are not billed) and identify in merge mode (`PUT
//! /customers` replaces the whole record, so an identify is written as the
//! record Amberflo holds with only the event's changes, or created).

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::delivery::{Call, Courier, Delivered};
use crate::destination::amberflo::Api;
use crate::event::Origin;
use crate::interrupt;
use crate::reason::Reason;
use crate::report::Report;
use crate::transport::Transport;

/// Customer records kept to merge identifies into without looking each up:
/// at most this many (some 20 MiB of peak RSS with the benchmark's traits),
/// the oldest known forgotten first.
const KEPT_RECORDS: usize = 10_000;

/// Where an event is in the input: its input, the line it ends on, and its
/// place among the events of that line (a `batch` line holds several).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct EventAt {
    pub input: usize,
    pub line: u64,
    pub event: usize,
}

/// An identify write the journal keeps.
#[derive(Serialize, Deserialize)]
struct Applied {
    customer: String,
    at: EventAt,
}

/// The files kept beside a checkpoint.
pub(crate) struct Files {
    /// Customers known to exist, one a line.
    pub known: PathBuf,
    /// On a resume, how much of `known` the checkpoint covers.
    pub known_length: Option<u64>,
    /// The identify writes made; never cut back, since they really happened.
    pub journal: PathBuf,
    /// Resuming: the journal is read; otherwise it starts empty.
    pub resumed: bool,
}

/// What became of an identify.
pub(crate) enum Identified {
    /// Amberflo holds what the event says (written, or nothing to change).
    Sent,
    Refused(Reason),
    Failed(Reason),
}

pub(crate) struct Customers {
    api: Arc<Api>,
    /// `--ensure-customers`: make sure of each customer before its meter records.
    ensures: bool,
    /// identify is merged here (else it is a batched `PUT`, and only its name is kept).
    merges: bool,
    /// Customers known to exist: looked up or created in this run or a resumed one.
    known: HashSet<String>,
    /// Customers that could not be created, with why; their records are rejected.
    refused: HashMap<String, Reason>,
    /// Names given by identify calls read so far (replace mode).
    names: HashMap<String, String>,
    records: Records,
    /// Per customer, the last identify written, from the journal and this run.
    applied: HashMap<String, EventAt>,
    /// With a checkpoint: the known customers, one a line, so a resume does not ask again.
    file: Option<(PathBuf, File)>,
    journal: Option<(PathBuf, File)>,
}

impl Customers {
    pub(crate) fn new(
        api: Arc<Api>,
        ensures: bool,
        merges: bool,
        files: Option<&Files>,
    ) -> anyhow::Result<Customers> {
        let mut customers = Customers {
            api,
            ensures,
            merges,
            known: HashSet::new(),
            refused: HashMap::new(),
            names: HashMap::new(),
            records: Records::default(),
            applied: HashMap::new(),
            file: None,
            journal: None,
        };
        let Some(files) = files else {
            return Ok(customers);
        };
        let (file, known) = open_lines(&files.known, files.known_length.unwrap_or(0))?;
        for id in known {
            customers.known.insert(serde_json::from_str(&id)?);
        }
        customers.file = Some((files.known.clone(), file));
        let kept = if files.resumed { u64::MAX } else { 0 };
        let (journal, applied) = open_lines(&files.journal, kept)?;
        for line in applied {
            let applied: Applied = serde_json::from_str(&line).with_context(|| {
                format!("{} is not one segrelay wrote", files.journal.display())
            })?;
            let last = customers
                .applied
                .entry(applied.customer)
                .or_insert(applied.at);
            *last = (*last).max(applied.at);
        }
        customers.journal = Some((files.journal.clone(), journal));
        Ok(customers)
    }

    pub(crate) fn ensures(&self) -> bool {
        self.ensures
    }

    pub(crate) fn merges(&self) -> bool {
        self.merges
    }

    /// Remembers the name an identify call gives, for customers created later.
    pub(crate) fn named(&mut self, customer_json: &str) {
        if let Ok(customer) = serde_json::from_str::<Value>(customer_json)
            && let (Some(id), Some(name)) = (
                customer["customerId"].as_str(),
                customer["customerName"].as_str(),
            )
        {
            self.names.insert(id.to_owned(), name.to_owned());
        }
    }

    /// Makes sure the customer exists. Err is the reason to reject its records;
    /// a failure to get any answer aborts the run through the courier.
    pub(crate) fn ensure(
        &mut self,
        customer_id: &str,
        courier: &Courier,
        transport: &mut dyn Transport,
        report: &mut Report,
    ) -> anyhow::Result<Result<(), Reason>> {
        if self.known.contains(customer_id) {
            return Ok(Ok(()));
        }
        if let Some(reason) = self.refused.get(customer_id) {
            return Ok(Err(reason.clone()));
        }
        let mut calls = Calls::new(courier, transport, &[]);
        let made_sure = self.look_up_or_create(customer_id, &mut calls);
        calls.count(report);
        made_sure
    }

    /// The lookup, then the creation when the customer is missing.
    fn look_up_or_create(
        &mut self,
        customer_id: &str,
        calls: &mut Calls,
    ) -> anyhow::Result<Result<(), Reason>> {
        match self.look_up(customer_id, calls)? {
            Found::Record(record) => return self.remember(customer_id, Some(record)).map(Ok),
            // A dry run cannot know: it shows the creation that may follow.
            Found::Nothing | Found::Unknown => {}
            Found::Refused(message) => {
                return Ok(Err(
                    self.refuse(customer_id, format!("looking it up: {message}"))
                ));
            }
            Found::Failed(message) => return Ok(Err(Reason::new("run aborted", message))),
        }
        let name = self
            .names
            .get(customer_id)
            .map_or(customer_id, String::as_str);
        let (request, record) = self.api.create(customer_id, name);
        match calls.call(&request)? {
            Call::Answered(response) => {
                let record = answered_record(&response.body, customer_id).unwrap_or(record);
                self.remember(customer_id, Some(record))?;
            }
            Call::Written => self.remember(customer_id, Some(record))?,
            // Created meanwhile by someone else: it exists.
            Call::Refused { response, .. } if response.status == 409 => {
                self.remember(customer_id, None)?
            }
            Call::Refused { message, .. } => {
                return Ok(Err(
                    self.refuse(customer_id, format!("creating it: {message}"))
                ));
            }
            Call::Stopped(stop) => return Ok(Err(Reason::new("run aborted", stop.to_string()))),
        }
        Ok(Ok(()))
    }

    fn refuse(&mut self, customer_id: &str, message: String) -> Reason {
        let reason = Reason::new("customer not created", message);
        self.refused.insert(customer_id.to_owned(), reason.clone());
        reason
    }

    /// Writes an identify (`changes`: the customer JSON translation made,
    /// without a name when the event gives none) merged into the customer's
    /// record, or creates the customer; writes nothing when nothing changes.
    pub(crate) fn identify(
        &mut self,
        changes: &str,
        origin: &Origin,
        at: EventAt,
        courier: &Courier,
        transport: &mut dyn Transport,
        report: &mut Report,
    ) -> anyhow::Result<Identified> {
        let changes: Map<String, Value> =
            serde_json::from_str(changes).context("an identify's customer JSON")?;
        let customer_id = changes["customerId"]
            .as_str()
            .context("an identify's customer has an id")?
            .to_owned();
        // Written by an earlier run of this job, or a newer identify was: the
        // destination holds it, or something newer.
        if self
            .applied
            .get(&customer_id)
            .is_some_and(|last| at <= *last)
        {
            return Ok(Identified::Sent);
        }
        if let Some(reason) = courier.aborted() {
            return Ok(Identified::Failed(Reason::new("run aborted", reason)));
        }
        if interrupt::requested() {
            return Ok(Identified::Failed(Reason::new(
                "interrupted",
                "not sent: the run was stopped",
            )));
        }
        let origins = [origin];
        let mut calls = Calls::new(courier, transport, &origins);
        let identified = self.merge(&customer_id, &changes, at, &mut calls, report);
        calls.count(report);
        identified
    }

    fn merge(
        &mut self,
        customer_id: &str,
        changes: &Map<String, Value>,
        at: EventAt,
        calls: &mut Calls,
        report: &mut Report,
    ) -> anyhow::Result<Identified> {
        // At most twice: when a creation is refused because the customer
        // appeared meanwhile (409), its record is looked up and merged into.
        for _ in 0..2 {
            let existing = match self.records.get(customer_id) {
                Some(record) => Some(record.clone()),
                None => match self.look_up(customer_id, calls)? {
                    Found::Record(record) => Some(record),
                    Found::Nothing => None,
                    Found::Unknown => {
                        report.warn(
                            "customers are not looked up without a real send: each identify's \
                             customer is shown created (POST /customers); a real send merges \
                             it into the record Amberflo holds when there is one",
                        );
                        None
                    }
                    Found::Refused(message) => return Ok(refused(message)),
                    Found::Failed(message) => {
                        return Ok(Identified::Failed(Reason::new("run aborted", message)));
                    }
                },
            };
            let (method, record) = match existing {
                Some(existing) => {
                    let merged = merged(&existing, changes, customer_id);
                    if merged == existing {
                        self.remember(customer_id, Some(existing))?;
                        return Ok(Identified::Sent);
                    }
                    ("PUT", merged)
                }
                None => ("POST", created(changes, customer_id)),
            };
            let record = match calls.call(&self.api.write(method, &record))? {
                Call::Answered(response) => {
                    answered_record(&response.body, customer_id).unwrap_or(record)
                }
                Call::Written => record,
                Call::Refused { response, .. } if response.status == 409 && method == "POST" => {
                    continue;
                }
                Call::Refused { message, .. } => return Ok(refused(message)),
                Call::Stopped(stop) => {
                    let reason = Reason::new("run aborted", stop.to_string());
                    return Ok(Identified::Failed(reason));
                }
            };
            self.remember(customer_id, Some(record))?;
            self.applied(customer_id, at)?;
            return Ok(Identified::Sent);
        }
        Ok(refused(format!(
            "customer {customer_id} was reported existing, then missing"
        )))
    }

    /// `GET /customers?customerId=ID`.
    fn look_up(&mut self, customer_id: &str, calls: &mut Calls) -> anyhow::Result<Found> {
        Ok(match calls.call(&self.api.lookup(customer_id))? {
            // `{}` when there is no such customer.
            Call::Answered(response) => match answered_record(&response.body, customer_id) {
                Some(record) => Found::Record(record),
                None => Found::Nothing,
            },
            Call::Written => Found::Unknown,
            Call::Refused { message, .. } => Found::Refused(message),
            Call::Stopped(stop) => Found::Failed(stop.to_string()),
        })
    }

    /// The customer exists; its record, when known, is kept for later identifies.
    fn remember(
        &mut self,
        customer_id: &str,
        record: Option<Map<String, Value>>,
    ) -> anyhow::Result<()> {
        if let Some(record) = record {
            self.records.insert(customer_id, record);
        }
        if !self.known.insert(customer_id.to_owned()) {
            return Ok(());
        }
        if let Some((path, file)) = &mut self.file {
            // As a JSON string, so that no id can break the one-a-line format.
            let line = format!("{}\n", serde_json::to_string(customer_id)?);
            file.write_all(line.as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(())
    }

    /// Journals an identify write as soon as it is made, in one write.
    fn applied(&mut self, customer_id: &str, at: EventAt) -> anyhow::Result<()> {
        self.applied.insert(customer_id.to_owned(), at);
        if let Some((path, file)) = &mut self.journal {
            let applied = Applied {
                customer: customer_id.to_owned(),
                at,
            };
            let line = format!("{}\n", serde_json::to_string(&applied)?);
            file.write_all(line.as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(())
    }

    /// Makes the files durable, and says how long the customers file is.
    pub(crate) fn sync(&mut self) -> anyhow::Result<Option<u64>> {
        if let Some((path, journal)) = &mut self.journal {
            journal
                .sync_data()
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        let Some((path, file)) = &mut self.file else {
            return Ok(None);
        };
        let context = || format!("cannot write {}", path.display());
        file.sync_data().with_context(context)?;
        Ok(Some(file.stream_position().with_context(context)?))
    }
}

/// The requests one customer takes, counted together, and the events they are for.
struct Calls<'a> {
    courier: &'a Courier,
    transport: &'a mut dyn Transport,
    origins: &'a [&'a Origin],
    /// The requests made, for the summary.
    delivered: Delivered,
}

impl<'a> Calls<'a> {
    fn new(
        courier: &'a Courier,
        transport: &'a mut dyn Transport,
        origins: &'a [&'a Origin],
    ) -> Calls<'a> {
        Calls {
            courier,
            transport,
            origins,
            delivered: Delivered::default(),
        }
    }

    fn call(&mut self, request: &crate::destination::Request) -> anyhow::Result<Call> {
        self.courier
            .call_for(self.transport, request, self.origins, &mut self.delivered)
    }

    /// Adds the requests made to the summary.
    fn count(self, report: &mut Report) {
        let made = self.delivered;
        report.delivery(made.requests, made.retries, made.server_wait, made.backoff);
    }
}

enum Found {
    Record(Map<String, Value>),
    Nothing,
    /// A dry run or a check: no answer to go by.
    Unknown,
    Refused(String),
    Failed(String),
}

fn refused(message: String) -> Identified {
    Identified::Refused(Reason::new("refused by amberflo", message))
}

/// An answer holding this customer's record.
fn answered_record(body: &[u8], customer_id: &str) -> Option<Map<String, Value>> {
    match serde_json::from_slice(body).ok()? {
        Value::Object(record) if record.get("customerId")?.as_str()? == customer_id => Some(record),
        _ => None,
    }
}

/// A new customer: the event's fields, named by its id when the event gives no name.
fn created(changes: &Map<String, Value>, customer_id: &str) -> Map<String, Value> {
    let mut record = changes.clone();
    record
        .entry("customerName")
        .or_insert_with(|| Value::String(customer_id.to_owned()));
    record
}

/// The record with the event's name, email and traits over its own; every
/// other field, and every trait the event does not mention, kept.
fn merged(
    existing: &Map<String, Value>,
    changes: &Map<String, Value>,
    customer_id: &str,
) -> Map<String, Value> {
    let mut record = existing.clone();
    for key in ["customerName", "customerEmail"] {
        if let Some(value) = changes.get(key) {
            record.insert(key.to_owned(), value.clone());
        }
    }
    let named = record
        .get("customerName")
        .and_then(Value::as_str)
        .is_some_and(|name| !name.is_empty());
    if !named {
        record.insert(
            "customerName".to_owned(),
            Value::String(customer_id.to_owned()),
        );
    }
    let new_traits = changes.get("traits").and_then(Value::as_object);
    if let Some(new_traits) = new_traits.filter(|t| !t.is_empty()) {
        let mut traits = record
            .get("traits")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        traits.extend(new_traits.iter().map(|(k, v)| (k.clone(), v.clone())));
        record.insert("traits".to_owned(), Value::Object(traits));
    }
    record
}

/// Opens a file of lines for appending, cut to `length` bytes, with the lines kept.
fn open_lines(path: &Path, length: u64) -> anyhow::Result<(File, Vec<String>)> {
    let context = || format!("cannot open {}", path.display());
    let mut handle = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .with_context(context)?;
    if length != u64::MAX {
        handle.set_len(length).with_context(context)?;
    }
    let lines = BufReader::new((&handle).take(length))
        .lines()
        .collect::<Result<Vec<_>, _>>()
        .with_context(context)?;
    handle.seek(SeekFrom::End(0)).with_context(context)?;
    Ok((handle, lines))
}

/// Customer records by id, at most `KEPT_RECORDS`, the first known forgotten first.
#[derive(Default)]
struct Records {
    by_id: HashMap<String, Map<String, Value>>,
    order: VecDeque<String>,
}

impl Records {
    fn get(&self, customer_id: &str) -> Option<&Map<String, Value>> {
        self.by_id.get(customer_id)
    }

    fn insert(&mut self, customer_id: &str, record: Map<String, Value>) {
        if self.by_id.insert(customer_id.to_owned(), record).is_none() {
            self.order.push_back(customer_id.to_owned());
            if self.order.len() > KEPT_RECORDS
                && let Some(oldest) = self.order.pop_front()
            {
                self.by_id.remove(&oldest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn a_merge_keeps_what_the_event_does_not_give() {
        let existing = map(json!({
            "customerId": "c", "customerName": "Ada", "customerEmail": "ada@example.com",
            "lifecycleStage": "ACTIVE",
            "traits": {"stripeId": "cus_1", "awsm.customerIdentifier": "aws-1", "plan": "basic"},
        }));
        let changes = map(json!({"customerId": "c", "traits": {"plan": "pro", "seats": "3"}}));
        assert_eq!(
            Value::Object(merged(&existing, &changes, "c")),
            json!({
                "customerId": "c", "customerName": "Ada", "customerEmail": "ada@example.com",
                "lifecycleStage": "ACTIVE",
                "traits": {"stripeId": "cus_1", "awsm.customerIdentifier": "aws-1", "plan": "pro", "seats": "3"},
            })
        );
        let nothing_new =
            map(json!({"customerId": "c", "customerName": "Ada", "traits": {"plan": "basic"}}));
        assert_eq!(merged(&existing, &nothing_new, "c"), existing);
        let empty = map(json!({"customerId": "c", "traits": {}}));
        let bare = map(json!({"customerId": "c", "customerName": "c"}));
        assert_eq!(merged(&bare, &empty, "c"), bare);
    }

    #[test]
    fn records_are_bounded_oldest_first() {
        let mut records = Records::default();
        for i in 0..=KEPT_RECORDS {
            records.insert(&format!("c{i}"), Map::new());
        }
        assert!(records.get("c0").is_none());
        assert!(records.get("c1").is_some());
        assert_eq!(records.by_id.len(), KEPT_RECORDS);
        assert_eq!(records.order.len(), KEPT_RECORDS);
    }
}
