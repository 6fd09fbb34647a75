//! `identify = "replace"`: the event's customer record written whole, as
//! Amberflo's SDKs' `add_or_update` writes one: looked up first, then `PUT`
//! over the record Amberflo holds, or `POST`ed when it holds none, since a
//! `PUT` is no way to create a customer.

use serde_json::{Map, Value};

use super::{Calls, Customers, EventAt, Found, Identified, answered_record, refused};
use crate::delivery::Call;
use crate::event::reason::Reason;
use crate::report::Report;

/// Said once when a dry run or a check meets a customer in replace mode.
const NOT_LOOKED_UP: &str = "customers are not looked up without a real send: each customer \
     an identify writes is shown looked up, then created (POST /customers) the first time; a \
     real send PUTs the event's record instead when Amberflo holds the customer";

impl Customers {
    /// Writes `record` (an identify's customer, whole) over the customer's,
    /// or creates the customer with it. A customer known to exist (looked up,
    /// written or made sure of in this run or a resumed one) is not asked again.
    pub(super) fn replace(
        &mut self,
        customer_id: &str,
        record: &Map<String, Value>,
        at: EventAt,
        calls: &mut Calls,
        report: &mut Report,
    ) -> anyhow::Result<Identified> {
        // At most twice: a creation refused because the customer appeared
        // meanwhile (409) is made a replacement.
        for _ in 0..2 {
            let exists = self.known.contains(customer_id)
                || match self.look_up(customer_id, calls)? {
                    Found::Customer(found) => {
                        self.remember(customer_id, Some(found))?;
                        true
                    }
                    Found::Nothing => false,
                    Found::Unknown => {
                        report.warn(NOT_LOOKED_UP);
                        false
                    }
                    Found::Refused(message) => {
                        return Ok(refused(format!("looking it up: {message}")));
                    }
                    Found::Failed(message) => {
                        return Ok(Identified::Failed(Reason::new("run aborted", message)));
                    }
                };
            let method = if exists { "PUT" } else { "POST" };
            let written = match calls.call(&self.api.write(method, record))? {
                Call::Answered(response) => {
                    answered_record(&response.body, customer_id).unwrap_or_else(|| record.clone())
                }
                Call::Written => record.clone(),
                Call::Refused { response, .. } if response.status == 409 && !exists => {
                    self.remember(customer_id, None)?;
                    continue;
                }
                Call::Refused { message, .. } => return Ok(refused(message)),
                Call::Stopped(stop) => {
                    return Ok(Identified::Failed(Reason::new(
                        "run aborted",
                        stop.to_string(),
                    )));
                }
            };
            self.remember(customer_id, Some(written))?;
            self.applied(customer_id, at)?;
            return Ok(Identified::Sent);
        }
        Ok(refused(format!(
            "customer {customer_id} was reported existing, then missing"
        )))
    }
}
