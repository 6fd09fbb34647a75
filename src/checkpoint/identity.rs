//! What decides which events a checkpointed run sends, and where: its filters,
//! its destination and the settings that shape the records, its sending plan.
//! A checkpoint records them, so that a resume under other ones (which would
//! leave out events the first run filtered, or send the rest elsewhere) is
//! refused, naming what differs.
//!
//! The parts are generic (a name, a value, a phrase); the run builds its list
//! in one place (`RunConfig::identity`), so another filter is one more part.

use serde::{Deserialize, Serialize};

/// One thing that decides what a run sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Part {
    /// As the user names it: `--events`, `destination`, `setting properties_mapping`.
    pub name: String,
    /// What was given, compared between runs; None when not given (the
    /// default), which is also what a part a checkpoint does not hold means.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// What a run with this value sends, said after "sent" or "sends":
    /// `only seat_added`, `every event`. Never a secret.
    pub sends: String,
}

/// Every part of a run, in the order messages name them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct Identity(Vec<Part>);

impl Identity {
    /// Adds a part: `given` says what a run sends with the value, `otherwise`
    /// what it sends without it.
    pub(crate) fn part(
        &mut self,
        name: impl Into<String>,
        value: Option<String>,
        given: impl FnOnce(&str) -> String,
        otherwise: impl Into<String>,
    ) -> &mut Identity {
        let sends = match &value {
            Some(value) => given(value),
            None => otherwise.into(),
        };
        self.0.push(Part {
            name: name.into(),
            value,
            sends,
        });
        self
    }

    /// A sentence for each part whose value differs between the checkpoint's
    /// run (`self`) and this one (`now`), in `now`'s order, then the parts
    /// only the checkpoint has.
    pub(crate) fn differences(&self, now: &Identity) -> Vec<String> {
        let saved = |name: &str| self.0.iter().find(|p| p.name == name);
        let mut differences = Vec::new();
        for part in &now.0 {
            match saved(&part.name) {
                Some(before) if before.value == part.value => {}
                Some(before) => differences.push(format!(
                    "{}: the checkpoint's run sent {}; this run sends {}",
                    part.name, before.sends, part.sends
                )),
                // Recorded by an earlier segrelay without this part: it was not given.
                None if part.value.is_none() => {}
                None => differences.push(format!(
                    "{}: the checkpoint's run did not have it; this run sends {}",
                    part.name, part.sends
                )),
            }
        }
        for before in &self.0 {
            if before.value.is_some() && !now.0.iter().any(|p| p.name == before.name) {
                differences.push(format!(
                    "{}: the checkpoint's run sent {}; this run does not have it",
                    before.name, before.sends
                ));
            }
        }
        differences
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(names: Option<&str>) -> Identity {
        let mut identity = Identity::default();
        identity
            .part(
                "destination",
                Some("billing".into()),
                |d| format!("to {d}"),
                "",
            )
            .part(
                "--events",
                names.map(str::to_owned),
                |n| format!("only {n}"),
                "every event",
            );
        identity
    }

    #[test]
    fn names_exactly_what_differs() {
        assert!(events(None).differences(&events(None)).is_empty());
        assert!(events(Some("a")).differences(&events(Some("a"))).is_empty());
        assert_eq!(
            events(Some("seat_added")).differences(&events(None)),
            ["--events: the checkpoint's run sent only seat_added; this run sends every event"]
        );
        assert_eq!(
            events(None).differences(&events(Some("b"))),
            ["--events: the checkpoint's run sent every event; this run sends only b"]
        );
    }

    /// A part added in a later version is no difference while it is not given.
    #[test]
    fn a_part_the_checkpoint_lacks_counts_as_not_given() {
        let mut later = events(None);
        later.part("--new-filter", None, |v| v.to_owned(), "everything");
        assert!(events(None).differences(&later).is_empty());
        let mut given = events(None);
        given.part(
            "--new-filter",
            Some("x".into()),
            |v| format!("only {v}"),
            "",
        );
        assert_eq!(
            events(None).differences(&given),
            ["--new-filter: the checkpoint's run did not have it; this run sends only x"]
        );
        assert!(later.differences(&events(None)).is_empty());
        assert_eq!(
            given.differences(&events(None)),
            ["--new-filter: the checkpoint's run sent only x; this run does not have it"]
        );
    }

    #[test]
    fn round_trips_through_json() {
        let identity = events(Some("a,b"));
        let text = serde_json::to_string(&identity).unwrap();
        assert!(text.starts_with('['), "{text}");
        assert_eq!(serde_json::from_str::<Identity>(&text).unwrap(), identity);
    }
}
