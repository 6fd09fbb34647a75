//! `--ensure-customers` (Amberflo): before the first meter record of each
//! customer in a run, look the customer up and create it when Amberflo does
//! not know it, since records for an unknown customer are not billed.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::Value;

use crate::delivery::{Call, Courier, Delivered};
use crate::destination::amberflo::Api;
use crate::report::{Reason, Report};
use crate::transport::Transport;

pub struct EnsureCustomers {
    api: Api,
    /// Customers known to exist: looked up or created in this run or a resumed one.
    known: HashSet<String>,
    /// Customers that could not be created, with why; their records are rejected.
    refused: HashMap<String, Reason>,
    /// Names given by identify calls read so far.
    names: HashMap<String, String>,
    /// With a checkpoint: the known customers, one a line, so a resume does not ask again.
    file: Option<(PathBuf, File)>,
}

impl EnsureCustomers {
    /// `known_length`: on a resume, how much of the customers file the checkpoint covers.
    pub fn new(
        api: Api,
        file: Option<&Path>,
        known_length: Option<u64>,
    ) -> anyhow::Result<EnsureCustomers> {
        let mut known = HashSet::new();
        let file = match file {
            Some(path) => {
                let context = || format!("cannot open {}", path.display());
                let mut handle = OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .read(true)
                    .write(true)
                    .open(path)
                    .with_context(context)?;
                let length = known_length.unwrap_or(0);
                handle.set_len(length).with_context(context)?;
                for line in BufReader::new((&handle).take(length)).lines() {
                    let id: String =
                        serde_json::from_str(&line.with_context(context)?).with_context(context)?;
                    known.insert(id);
                }
                handle.seek(SeekFrom::End(0)).with_context(context)?;
                Some((path.to_owned(), handle))
            }
            None => None,
        };
        Ok(EnsureCustomers {
            api,
            known,
            refused: HashMap::new(),
            names: HashMap::new(),
            file,
        })
    }

    /// Remembers the name an identify call gives, for customers created later.
    pub fn named(&mut self, customer_json: &str) {
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
    pub fn ensure(
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
        let mut done = Delivered::default();
        let made_sure = self.look_up_or_create(customer_id, courier, transport, &mut done);
        report.delivery(done.requests, done.retries, done.server, done.backoff);
        if let Err(reason) = made_sure? {
            return Ok(Err(reason));
        }
        self.known.insert(customer_id.to_owned());
        if let Some((path, file)) = &mut self.file {
            // As a JSON string, so that no id can break the one-a-line format.
            let line = serde_json::to_string(customer_id)?;
            writeln!(file, "{line}").with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(Ok(()))
    }

    /// The lookup, then the creation when the customer is missing.
    fn look_up_or_create(
        &mut self,
        customer_id: &str,
        courier: &Courier,
        transport: &mut dyn Transport,
        done: &mut Delivered,
    ) -> anyhow::Result<Result<(), Reason>> {
        let exists = match courier.call(transport, &self.api.lookup(customer_id), done)? {
            Call::Answered(response) => serde_json::from_slice::<Value>(&response.body)
                .ok()
                .is_some_and(|body| body.get("customerId").is_some()),
            // A dry run cannot know: it shows the creation that may follow.
            Call::Written => false,
            Call::Refused { message, .. } => {
                return Ok(Err(
                    self.refuse(customer_id, format!("looking it up: {message}"))
                ));
            }
            Call::Failed(message) => return Ok(Err(Reason::new("run aborted", message))),
        };
        if exists {
            return Ok(Ok(()));
        }
        let name = self
            .names
            .get(customer_id)
            .map_or(customer_id, String::as_str);
        Ok(
            match courier.call(transport, &self.api.create(customer_id, name), done)? {
                Call::Answered(_) | Call::Written => Ok(()),
                // Created meanwhile by someone else: it exists.
                Call::Refused { response, .. } if response.status == 409 => Ok(()),
                Call::Refused { message, .. } => {
                    Err(self.refuse(customer_id, format!("creating it: {message}")))
                }
                Call::Failed(message) => Err(Reason::new("run aborted", message)),
            },
        )
    }

    fn refuse(&mut self, customer_id: &str, message: String) -> Reason {
        let reason = Reason::new("customer not created", message);
        self.refused.insert(customer_id.to_owned(), reason.clone());
        reason
    }

    /// Makes the customers file durable, and says how long it is.
    pub fn sync(&mut self) -> anyhow::Result<Option<u64>> {
        let Some((path, file)) = &mut self.file else {
            return Ok(None);
        };
        let context = || format!("cannot write {}", path.display());
        file.sync_data().with_context(context)?;
        Ok(Some(file.stream_position().with_context(context)?))
    }
}
