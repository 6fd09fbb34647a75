//! Amberflo's customers as the run's gate: each identify is written in input
//! order, one at a time, with its own outcome; with `--ensure-customers`
//! each customer is made sure of before the first of its meter records is
//! batched; in merge mode the input is read ahead to fold each customer's
//! identifies into one write.

use super::{Customers, Identified, files};
use crate::destination::amberflo::CUSTOMERS;
use crate::destination::gate::{EventAt, Gate, Gated, Gating};
use crate::destination::{Payload, Stream};
use crate::event::Origin;

impl Gate for Customers {
    /// Merged identifies are read ahead (replace mode writes each whole as it
    /// comes: there is nothing to fold).
    fn begin_ahead(&mut self) -> Option<&'static str> {
        if !self.merges {
            return None;
        }
        self.start_folding();
        Some("identify")
    }

    fn ahead(&mut self, payload: &Payload, at: EventAt) -> anyhow::Result<()> {
        match (payload.stream, payload.customer.as_deref()) {
            (CUSTOMERS, Some(customer_id)) => self.fold_ahead(customer_id, &payload.json, at),
            _ => Ok(()),
        }
    }

    fn ahead_done(&mut self, whole: bool) -> Vec<String> {
        self.folded(whole).into_iter().collect()
    }

    fn admit(
        &mut self,
        payload: &Payload,
        origin: &Origin,
        at: EventAt,
        gating: Gating,
    ) -> anyhow::Result<Gated> {
        let Gating {
            courier,
            transport,
            report,
        } = gating;
        let Some(customer) = &payload.customer else {
            return Ok(Gated::Through);
        };
        Ok(match payload.stream {
            // In input order, one at a time, each settled with its own outcome.
            Stream::Other(_) => {
                match self.identify(&payload.json, origin, at, courier, transport, report)? {
                    Identified::Sent => Gated::Sent,
                    Identified::Refused(reason) => Gated::Rejected(reason),
                    Identified::Failed(reason) => Gated::Failed(reason),
                }
            }
            Stream::Usage if !self.ensures => Gated::Through,
            Stream::Usage => match self.ensure(customer, courier, transport, report)? {
                Ok(()) => Gated::Through,
                Err(reason) => Gated::Rejected(reason),
            },
        })
    }

    /// The customers file's length: a resume forgets the customers learnt
    /// after the checkpoint (the journal is never cut back).
    fn sync(&mut self) -> anyhow::Result<Vec<(&'static str, u64)>> {
        Ok(match self.sync_files()? {
            Some(length) => vec![(files::KNOWN, length)],
            None => Vec::new(),
        })
    }
}
