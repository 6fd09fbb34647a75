//! Amberflo customers, with one knowledge of them shared by two paths:
//! `--ensure-customers` (before the first meter record of each customer, look
//! it up and create it when Amberflo does not know it, since records for an
//! unknown customer are not billed) and identify. In merge mode (`PUT
//! /customers` replaces the whole record) an identify is written as the
//! record Amberflo holds with only the event's changes, or created; read
//! from files, a customer's identifies are folded into one change first
//! ([`fold`]), written at most once a run. In replace mode the event's record
//! is written whole ([`replace`]).

mod files;
mod fold;
mod gate;
mod known;
mod replace;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use anyhow::Context;
use serde_json::{Map, Value};

use crate::delivery::{Call, Courier, Delivered};
use crate::destination::amberflo::Api;
use crate::destination::gate::{Beside, EventAt};
use crate::event::Origin;
use crate::event::reason::Reason;
use crate::interrupt;
use crate::report::Report;
use crate::transport::Transport;
use files::Kept;
use fold::{Fold, Folded, HELD_CUSTOMERS, folded};
use known::Known;

/// Customer records kept, so that a customer either path met is not looked up
/// again (identifies not folded: from standard input, or beyond the fold's
/// bound): at most this many (some 3 MiB with the benchmark's traits, kept as
/// text: see `Records`), the oldest known forgotten first.
const KEPT_RECORDS: usize = 10_000;

/// What became of an identify.
enum Identified {
    /// Amberflo holds what the event says (written, or nothing to change).
    Sent,
    Refused(Reason),
    Failed(Reason),
}

pub(crate) struct Customers {
    api: Arc<Api>,
    /// `--ensure-customers`: make sure of each customer before its meter records.
    ensures: bool,
    /// identify is merged into the record Amberflo holds (else it replaces it).
    merges: bool,
    /// Customers known to exist: looked up or created in this run or a resumed one.
    known: Known,
    /// Customers that could not be created, with why; their records are rejected.
    refused: HashMap<String, Reason>,
    records: Records,
    /// Per customer, the last identify Amberflo is known to hold (written, or
    /// found there), from the journal and this run.
    applied: HashMap<String, EventAt>,
    /// The identifies read ahead, folded per customer; None when the input
    /// could not be read ahead (standard input): each is written as it comes.
    fold: Option<Fold>,
    /// With a checkpoint: the known customers, so a resume does not ask
    /// again, and the journal of what Amberflo holds.
    kept: Option<Kept>,
}

/// What a customer's write came to.
enum Merged {
    /// Amberflo holds the change: written, or found there.
    Held,
    /// Amberflo refused the lookup, or the write (`writing`).
    Refused {
        message: String,
        writing: bool,
    },
    Failed(Reason),
}

/// How a customer missing from Amberflo is created.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Creating {
    /// For an identify: the fields it gives.
    Identified,
    /// Before its meter records: active from now on.
    Active,
}

impl Customers {
    pub(crate) fn new(
        api: Arc<Api>,
        ensures: bool,
        merges: bool,
        beside: Option<&Beside>,
    ) -> anyhow::Result<Customers> {
        let mut customers = Customers {
            api,
            ensures,
            merges,
            known: Known::default(),
            refused: HashMap::new(),
            records: Records::default(),
            applied: HashMap::new(),
            fold: None,
            kept: None,
        };
        if let Some(beside) = beside {
            let (kept, read) = Kept::open(beside)?;
            customers.known = read.known;
            customers.applied = read.applied;
            customers.kept = Some(kept);
        }
        Ok(customers)
    }

    /// Before the input is read ahead: identifies are folded from now on.
    fn start_folding(&mut self) {
        self.fold = Some(Fold::new(HELD_CUSTOMERS));
    }

    /// An identify read ahead (`changes`: its customer JSON), folded into its
    /// customer's net change unless Amberflo is known to hold it already.
    fn fold_ahead(&mut self, customer_id: &str, changes: &str, at: EventAt) -> anyhow::Result<()> {
        let held = self
            .applied
            .get(customer_id)
            .is_some_and(|last| at <= *last);
        match &mut self.fold {
            Some(fold) if !held => fold.add(customer_id, changes, at),
            _ => Ok(()),
        }
    }

    /// The input was read ahead (`whole`), or could not be (standard input):
    /// then identifies are written as they come. The warning when some
    /// customers' identifies could not be folded.
    fn folded(&mut self, whole: bool) -> Option<String> {
        if !whole {
            self.fold = None;
            return None;
        }
        let fold = self.fold.as_ref().filter(|fold| fold.unheld() > 0)?;
        Some(format!(
            "identifies of more than {} customers: those of the later customers ({} \
                 identifies) are written one by one as they come, not folded into one write \
                 per customer, so a re-run may write them again",
            fold.bound(),
            fold.unheld()
        ))
    }

    /// Makes sure the customer exists. Err is the reason to reject its records;
    /// a failure to get any answer aborts the run through the courier.
    fn ensure(
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
        let pending = match &mut self.fold {
            Some(fold) => fold.take(customer_id)?,
            None => None,
        };
        let made_sure = match pending {
            // Created (or updated) with the identifies ahead, once.
            Some(pending) => self.ensure_folded(customer_id, pending, &mut calls, report),
            None => self.look_up_or_create(customer_id, &mut calls),
        };
        calls.count(report);
        made_sure
    }

    fn ensure_folded(
        &mut self,
        customer_id: &str,
        pending: Folded,
        calls: &mut Calls,
        report: &mut Report,
    ) -> anyhow::Result<Result<(), Reason>> {
        let changes = &pending.changes;
        match self.merge(customer_id, changes, Creating::Active, calls, report)? {
            Merged::Held => {
                self.applied(customer_id, pending.through)?;
                Ok(Ok(()))
            }
            Merged::Refused {
                message,
                writing: false,
            } => Ok(Err(
                self.refuse(customer_id, format!("looking it up: {message}"))
            )),
            // Its identifies are written one by one when they come; the
            // customer is made sure of without them.
            Merged::Refused { .. } if self.known.contains(customer_id) => Ok(Ok(())),
            Merged::Refused { .. } => self.create(customer_id, calls),
            Merged::Failed(reason) => {
                if let Some(fold) = &mut self.fold {
                    fold.put_back(customer_id, pending);
                }
                Ok(Err(reason))
            }
        }
    }

    /// The lookup, then the creation when the customer is missing.
    fn look_up_or_create(
        &mut self,
        customer_id: &str,
        calls: &mut Calls,
    ) -> anyhow::Result<Result<(), Reason>> {
        match self.look_up(customer_id, calls)? {
            Found::Customer(record) => return self.remember(customer_id, Some(record)).map(Ok),
            // A dry run cannot know: it shows the creation that may follow.
            Found::Nothing | Found::Unknown => {}
            Found::Refused(message) => {
                return Ok(Err(
                    self.refuse(customer_id, format!("looking it up: {message}"))
                ));
            }
            Found::Failed(message) => return Ok(Err(Reason::new("run aborted", message))),
        }
        self.create(customer_id, calls)
    }

    /// `POST /customers`, named by its id, active.
    fn create(
        &mut self,
        customer_id: &str,
        calls: &mut Calls,
    ) -> anyhow::Result<Result<(), Reason>> {
        let (request, record) = self.api.create(customer_id, customer_id);
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
    /// The first identify of a customer whose identifies were folded writes
    /// their net change, and the later ones find it written. In replace mode,
    /// the event's record replaces the customer's, or creates it.
    fn identify(
        &mut self,
        changes: &str,
        origin: &Origin,
        at: EventAt,
        courier: &Courier,
        transport: &mut dyn Transport,
        report: &mut Report,
    ) -> anyhow::Result<Identified> {
        // Only the id first: most identifies of a customer are already
        // written (folded into its first) and need no more of their JSON.
        let customer_id = serde_json::from_str::<CustomerId>(changes)
            .context("an identify's customer has an id")?
            .id;
        let customer_id = &*customer_id;
        // Written by an earlier run of this job, or with a newer identify's
        // change: the destination holds it, or something newer.
        if self
            .applied
            .get(customer_id)
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
        if !self.merges {
            let changes = changes_of(changes)?;
            let mut calls = Calls::new(courier, transport, &origins);
            let identified = self.replace(customer_id, &changes, at, &mut calls, report);
            calls.count(report);
            return identified;
        }
        let pending = match &mut self.fold {
            Some(fold) => fold.take(customer_id)?,
            None => {
                if self.applied.contains_key(customer_id) {
                    report.warn(UNFOLDED);
                }
                None
            }
        };
        let mut calls = Calls::new(courier, transport, &origins);
        let identified = match pending {
            Some(pending) => {
                self.identify_folded(customer_id, changes, at, pending, &mut calls, report)
            }
            None => {
                let changes = changes_of(changes)?;
                self.identify_one(customer_id, &changes, at, &mut calls, report)
            }
        };
        calls.count(report);
        identified
    }

    /// Writes a customer's net change at its first identify.
    fn identify_folded(
        &mut self,
        customer_id: &str,
        changes: &str,
        at: EventAt,
        mut pending: Folded,
        calls: &mut Calls,
        report: &mut Report,
    ) -> anyhow::Result<Identified> {
        // Only when the input grew after it was read ahead.
        if at > pending.through {
            folded(&mut pending.changes, &changes_of(changes)?);
            pending.through = at;
        }
        let net = &pending.changes;
        match self.merge(customer_id, net, Creating::Identified, calls, report)? {
            Merged::Held => {
                self.applied(customer_id, pending.through)?;
                Ok(Identified::Sent)
            }
            // A refused write is not held against every identify folded in:
            // this one is written alone, and the later ones as they come,
            // each with its own outcome.
            Merged::Refused { writing: true, .. } if pending.through > at => {
                let changes = changes_of(changes)?;
                self.identify_one(customer_id, &changes, at, calls, report)
            }
            Merged::Refused { message, .. } => Ok(refused(message)),
            Merged::Failed(reason) => {
                if let Some(fold) = &mut self.fold {
                    fold.put_back(customer_id, pending);
                }
                Ok(Identified::Failed(reason))
            }
        }
    }

    /// Writes one identify's change.
    fn identify_one(
        &mut self,
        customer_id: &str,
        changes: &Map<String, Value>,
        at: EventAt,
        calls: &mut Calls,
        report: &mut Report,
    ) -> anyhow::Result<Identified> {
        Ok(
            match self.merge(customer_id, changes, Creating::Identified, calls, report)? {
                Merged::Held => {
                    self.applied(customer_id, at)?;
                    Identified::Sent
                }
                Merged::Refused { message, .. } => refused(message),
                Merged::Failed(reason) => Identified::Failed(reason),
            },
        )
    }

    /// Writes `changes` merged into the customer's record, or creates the
    /// customer with them; nothing when the record holds them already.
    fn merge(
        &mut self,
        customer_id: &str,
        changes: &Map<String, Value>,
        creating: Creating,
        calls: &mut Calls,
        report: &mut Report,
    ) -> anyhow::Result<Merged> {
        // At most twice: when a creation is refused because the customer
        // appeared meanwhile (409), its record is looked up and merged into.
        for _ in 0..2 {
            let existing = match self.records.get(customer_id) {
                Some(record) => Some(record),
                None => match self.look_up(customer_id, calls)? {
                    Found::Customer(record) => {
                        self.remember(customer_id, Some(record.clone()))?;
                        Some(record)
                    }
                    Found::Nothing => None,
                    Found::Unknown => {
                        report.warn(NOT_LOOKED_UP);
                        None
                    }
                    Found::Refused(message) => {
                        return Ok(Merged::Refused {
                            message,
                            writing: false,
                        });
                    }
                    Found::Failed(message) => {
                        return Ok(Merged::Failed(Reason::new("run aborted", message)));
                    }
                },
            };
            let (method, record) = match existing {
                Some(existing) => {
                    let merged = merged(&existing, changes, customer_id);
                    if merged == existing {
                        self.remember(customer_id, Some(existing))?;
                        return Ok(Merged::Held);
                    }
                    ("PUT", merged)
                }
                None => ("POST", created(changes, customer_id, creating)),
            };
            let record = match calls.call(&self.api.write(method, &record))? {
                Call::Answered(response) => {
                    answered_record(&response.body, customer_id).unwrap_or(record)
                }
                Call::Written => record,
                Call::Refused { response, .. } if response.status == 409 && method == "POST" => {
                    continue;
                }
                Call::Refused { message, .. } => {
                    return Ok(Merged::Refused {
                        message,
                        writing: true,
                    });
                }
                Call::Stopped(stop) => {
                    return Ok(Merged::Failed(Reason::new("run aborted", stop.to_string())));
                }
            };
            self.remember(customer_id, Some(record))?;
            return Ok(Merged::Held);
        }
        Ok(Merged::Refused {
            message: format!("customer {customer_id} was reported existing, then missing"),
            writing: true,
        })
    }

    /// `GET /customers?customerId=ID`.
    fn look_up(&mut self, customer_id: &str, calls: &mut Calls) -> anyhow::Result<Found> {
        Ok(match calls.call(&self.api.lookup(customer_id))? {
            // `{}` when there is no such customer.
            Call::Answered(response) => match answered_record(&response.body, customer_id) {
                Some(record) => Found::Customer(record),
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
        if !self.known.insert(customer_id) {
            return Ok(());
        }
        match &mut self.kept {
            Some(kept) => kept.known(customer_id),
            None => Ok(()),
        }
    }

    /// Journals that Amberflo holds the customer's identifies through `at`
    /// (written, or found there), as soon as it is known, in one write.
    fn applied(&mut self, customer_id: &str, at: EventAt) -> anyhow::Result<()> {
        self.applied.insert(customer_id.to_owned(), at);
        match &mut self.kept {
            Some(kept) => kept.applied(customer_id, at),
            None => Ok(()),
        }
    }

    /// Makes the files durable, and says how long the customers file is.
    fn sync_files(&mut self) -> anyhow::Result<Option<u64>> {
        self.kept.as_mut().map(Kept::sync).transpose()
    }
}

/// Said once when a dry run or a check meets a customer.
const NOT_LOOKED_UP: &str = "customers are not looked up without a real send: each customer \
     is shown created (POST /customers) with its identifies folded into one change; a real send \
     writes only what the record Amberflo holds lacks, and nothing when it holds it all";

/// Said once when a customer is identified again from standard input.
const UNFOLDED: &str = "standard input is read once, so a customer's identifies are not folded \
     into one write: each is written as it comes, and a re-run of the same input writes again the \
     customers identified more than once (read the input from a file to write each once)";

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
    Customer(Map<String, Value>),
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

/// A new customer: the event's fields, named by its id when the event gives
/// no name; active from now on when made before its meter records (as
/// `--ensure-customers` makes the customers no identify mentions).
fn created(
    changes: &Map<String, Value>,
    customer_id: &str,
    creating: Creating,
) -> Map<String, Value> {
    let mut record = changes.clone();
    record
        .entry("customerName")
        .or_insert_with(|| Value::String(customer_id.to_owned()));
    if creating == Creating::Active {
        record
            .entry("lifecycleStage")
            .or_insert_with(|| Value::String("ACTIVE".to_owned()));
    }
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
    folded(&mut record, changes);
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
    record
}

/// Customer records by id, at most `KEPT_RECORDS`, the first known forgotten
/// first. Each is kept as its JSON text, parsed when a later identify of the
/// customer merges into it: about 250 bytes a record with the benchmark's
/// traits, where a parsed map took some 2 KiB (a tree node and a string for
/// every field).
#[derive(Default)]
struct Records {
    by_id: HashMap<Box<str>, Box<str>>,
    order: VecDeque<Box<str>>,
}

impl Records {
    fn get(&self, customer_id: &str) -> Option<Map<String, Value>> {
        let text = self.by_id.get(customer_id)?;
        // Written below from a map: it parses back to the same map (numbers
        // keep their digits).
        Some(serde_json::from_str(text).expect("a kept customer record is JSON"))
    }

    fn insert(&mut self, customer_id: &str, record: Map<String, Value>) {
        let text = Value::Object(record).to_string().into_boxed_str();
        if self.by_id.insert(customer_id.into(), text).is_none() {
            self.order.push_back(customer_id.into());
            if self.order.len() > KEPT_RECORDS
                && let Some(oldest) = self.order.pop_front()
            {
                self.by_id.remove(&oldest);
            }
        }
    }
}

/// An identify's customer id, borrowed from its JSON where it has no escapes.
#[derive(serde::Deserialize)]
struct CustomerId<'a> {
    #[serde(rename = "customerId", borrow)]
    id: std::borrow::Cow<'a, str>,
}

/// An identify's customer JSON, whole.
fn changes_of(changes: &str) -> anyhow::Result<Map<String, Value>> {
    serde_json::from_str(changes).context("an identify's customer JSON")
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

    /// Kept as text, a record reads back as it was: what a later merge
    /// compares and writes is the same.
    #[test]
    fn a_kept_record_reads_back_as_it_was() {
        let record = map(json!({
            "customerId": "c", "customerName": "Ada \"A\" Løvelace", "lifecycleStage": "ACTIVE",
            "traits": {"seats": "3", "plan": "pro", "awsm.customerIdentifier": "aws-1"},
            "createTime": 1714521600000_u64, "balance": 12.50, "big": 123456789012345678901234567890_f64,
        }));
        let digits: Map<String, Value> =
            serde_json::from_str(r#"{"customerId":"d","n":1.50,"m":1e3,"k":18446744073709551616}"#)
                .unwrap();
        let mut records = Records::default();
        records.insert("c", record.clone());
        records.insert("d", digits.clone());
        assert_eq!(records.get("c"), Some(record));
        let read = records.get("d").unwrap();
        assert_eq!(read, digits);
        assert_eq!(
            Value::Object(read).to_string(),
            Value::Object(digits).to_string()
        );
        assert_eq!(records.get("e"), None);
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
