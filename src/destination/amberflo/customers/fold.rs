//! Identifies folded per customer before they are written: a customer
//! identified several times in the input is written once, with the net change
//! of all its identifies, so that a re-run of the same input finds Amberflo
//! holding it already and writes nothing, and no run ever writes an older
//! identify's state over a newer one's, even for a moment.

use std::collections::HashMap;

use anyhow::Context;
use serde_json::{Map, Value};

use super::EventAt;

/// Customers whose identifies are folded at most (some 20 MiB with the
/// benchmark's traits): those of the customers met after the first this many
/// are written one by one, as they come.
pub(crate) const HELD_CUSTOMERS: usize = 50_000;

/// A customer's identifies not yet written, folded into one.
struct Pending {
    /// The net change, as the customer JSON translation makes: kept as text,
    /// a third of the memory of a parsed map.
    changes: Box<str>,
    /// The customer's last identify folded in.
    through: EventAt,
}

/// The net change of each customer's identifies, read ahead of the pass.
pub(crate) struct Fold {
    held: HashMap<String, Pending>,
    /// Customers held at most.
    bound: usize,
    /// Identifies of customers beyond the bound: not folded.
    unheld: u64,
}

impl Fold {
    pub(crate) fn new(bound: usize) -> Fold {
        Fold {
            held: HashMap::new(),
            bound,
            unheld: 0,
        }
    }

    /// Folds an identify (`changes`: its customer JSON) into its customer's
    /// net change; identifies come in input order.
    pub(crate) fn add(
        &mut self,
        customer_id: &str,
        changes: &str,
        at: EventAt,
    ) -> anyhow::Result<()> {
        if let Some(pending) = self.held.get_mut(customer_id) {
            let mut net = parse(&pending.changes)?;
            folded(&mut net, &parse(changes)?);
            pending.changes = Value::Object(net).to_string().into_boxed_str();
            pending.through = pending.through.max(at);
            return Ok(());
        }
        if self.held.len() >= self.bound {
            self.unheld += 1;
            return Ok(());
        }
        let pending = Pending {
            changes: changes.into(),
            through: at,
        };
        self.held.insert(customer_id.to_owned(), pending);
        Ok(())
    }

    /// The customer's net change and its last identify, taken out: it is
    /// written once.
    pub(crate) fn take(&mut self, customer_id: &str) -> anyhow::Result<Option<Folded>> {
        let Some(pending) = self.held.remove(customer_id) else {
            return Ok(None);
        };
        Ok(Some(Folded {
            changes: parse(&pending.changes)?,
            through: pending.through,
        }))
    }

    /// Puts back a net change that could not be written, for a later try.
    pub(crate) fn put_back(&mut self, customer_id: &str, folded: Folded) {
        let changes = Value::Object(folded.changes).to_string().into_boxed_str();
        let pending = Pending {
            changes,
            through: folded.through,
        };
        self.held.insert(customer_id.to_owned(), pending);
    }

    /// Identifies not folded, their customers being beyond the bound.
    pub(crate) fn unheld(&self) -> u64 {
        self.unheld
    }

    pub(crate) fn bound(&self) -> usize {
        self.bound
    }
}

/// A customer's net change, and the last identify it holds.
pub(crate) struct Folded {
    pub changes: Map<String, Value>,
    pub through: EventAt,
}

fn parse(changes: &str) -> anyhow::Result<Map<String, Value>> {
    serde_json::from_str(changes).context("an identify's customer JSON")
}

/// `later`'s name, email and traits over `earlier`'s, trait by trait; every
/// other field, and every trait `later` does not mention, kept.
pub(crate) fn folded(earlier: &mut Map<String, Value>, later: &Map<String, Value>) {
    for key in ["customerName", "customerEmail"] {
        if let Some(value) = later.get(key) {
            earlier.insert(key.to_owned(), value.clone());
        }
    }
    let new_traits = later.get("traits").and_then(Value::as_object);
    if let Some(new_traits) = new_traits.filter(|t| !t.is_empty()) {
        let mut traits = earlier
            .get("traits")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        traits.extend(new_traits.iter().map(|(k, v)| (k.clone(), v.clone())));
        earlier.insert("traits".to_owned(), Value::Object(traits));
    }
}

#[cfg(test)]
mod tests {
    use super::super::merged;
    use super::*;
    use serde_json::json;

    fn at(line: u64) -> EventAt {
        EventAt {
            input: 0,
            line,
            event: 0,
        }
    }

    fn net(fold: &mut Fold, customer_id: &str) -> Option<(Value, EventAt)> {
        let folded = fold.take(customer_id).unwrap()?;
        Some((Value::Object(folded.changes), folded.through))
    }

    #[test]
    fn later_identifies_win_and_traits_merge_key_by_key() {
        let mut fold = Fold::new(10);
        let identifies = [
            json!({"customerId": "c", "customerName": "Ada", "traits": {"plan": "basic", "region": "eu"}}),
            json!({"customerId": "d", "traits": {"plan": "free"}}),
            json!({"customerId": "c", "traits": {"plan": "pro"}}),
            json!({"customerId": "c", "customerEmail": "ada@example.com", "traits": {}}),
        ];
        for (line, identify) in identifies.iter().enumerate() {
            let id = identify["customerId"].as_str().unwrap();
            fold.add(id, &identify.to_string(), at(line as u64 + 1))
                .unwrap();
        }
        assert_eq!(
            net(&mut fold, "c"),
            Some((
                json!({"customerId": "c", "customerName": "Ada", "customerEmail": "ada@example.com",
                       "traits": {"plan": "pro", "region": "eu"}}),
                at(4)
            ))
        );
        assert_eq!(net(&mut fold, "c"), None, "taken once");
        assert_eq!(
            net(&mut fold, "d"),
            Some((
                json!({"customerId": "d", "traits": {"plan": "free"}}),
                at(2)
            ))
        );
    }

    /// Writing the net change once leaves the record each identify written in
    /// turn would have left.
    #[test]
    fn the_net_change_merges_as_the_identifies_one_by_one() {
        let record = json!({
            "customerId": "c", "customerName": "Ada Corp", "lifecycleStage": "ACTIVE",
            "traits": {"stripeId": "cus_1", "plan": "basic"},
        });
        let record = record.as_object().unwrap();
        let identifies = [
            json!({"customerId": "c", "traits": {"plan": "pro", "seats": "3"}}),
            json!({"customerId": "c", "customerName": "Ada", "traits": {}}),
            json!({"customerId": "c", "customerEmail": "a@x.example", "traits": {"seats": "5"}}),
        ];
        let mut one_by_one = record.clone();
        let mut fold = Fold::new(1);
        for (line, identify) in identifies.iter().enumerate() {
            one_by_one = merged(&one_by_one, identify.as_object().unwrap(), "c");
            fold.add("c", &identify.to_string(), at(line as u64))
                .unwrap();
        }
        let folded = fold.take("c").unwrap().unwrap();
        assert_eq!(merged(record, &folded.changes, "c"), one_by_one);
    }

    #[test]
    fn customers_beyond_the_bound_are_not_held() {
        let mut fold = Fold::new(2);
        let identify = |id: &str| json!({"customerId": id, "traits": {"n": "1"}}).to_string();
        for (line, id) in ["a", "b", "c", "a", "c", "b"].iter().enumerate() {
            fold.add(id, &identify(id), at(line as u64)).unwrap();
        }
        assert_eq!(fold.unheld(), 2, "c's two identifies");
        assert_eq!(net(&mut fold, "a").map(|(_, through)| through), Some(at(3)));
        assert_eq!(net(&mut fold, "b").map(|(_, through)| through), Some(at(5)));
        assert!(net(&mut fold, "c").is_none(), "written as it comes");
    }

    #[test]
    fn a_net_change_put_back_is_taken_again() {
        let mut fold = Fold::new(1);
        let identify = json!({"customerId": "c", "customerName": "Ada"});
        fold.add("c", &identify.to_string(), at(7)).unwrap();
        let folded = fold.take("c").unwrap().unwrap();
        fold.put_back("c", folded);
        assert_eq!(net(&mut fold, "c"), Some((identify, at(7))));
    }
}
