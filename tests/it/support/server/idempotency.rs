//! Orb's request idempotency (its API reference, "Request idempotency"): a POST
//! may carry an `Idempotency-Key` header (at most 64 characters). The first
//! answer to a key is kept (48 hours at Orb; here for the server's life, or
//! until [`super::TestServer::orb_forget_idempotency_keys`]) and a repeat of the
//! same request gets it again, with `Idempotent-Replayed: true`. Every answer to
//! a keyed request carries the `Idempotency-Key` header back. A repeat while
//! the first is still being handled, or the key reused for another request
//! (other method, path, query or body), gets 409 resource conflict.
//!
//! Where the reference is silent: which answers are kept. Kept: 2xx and 4xx,
//! the answers to what was carried out or refused; not kept: 409, 429 and 5xx,
//! which Orb asks to retry (a repeat is handled anew). GET requests are not
//! keyed ("ignored": they are idempotent by default).

use std::collections::HashMap;

use super::{Request, Response};

/// At most this many characters (Orb's limit); longer keys are refused with 400.
pub(super) const MAX_KEY_CHARS: usize = 64;

#[derive(Default)]
pub(super) struct Store {
    /// Key → the request it was first used for, and the answer once kept.
    keys: HashMap<String, Entry>,
}

struct Entry {
    request: (String, String, String, Vec<u8>),
    /// None while the first request is being handled.
    answer: Option<Response>,
}

/// What to do with an arriving request.
pub(super) enum Arrival {
    /// Not keyed: handle it.
    Unkeyed,
    /// Keyed, first seen (or its earlier answer was not kept): handle it, then
    /// [`Store::finish`] with the key.
    Handle(String),
    /// Answer this without handling.
    Answer(Response),
}

fn identity(req: &Request) -> (String, String, String, Vec<u8>) {
    (
        req.method.clone(),
        req.path.clone(),
        req.query.clone(),
        req.body.clone(),
    )
}

impl Store {
    pub(super) fn arrive(&mut self, req: &Request) -> Arrival {
        let Some(key) = req.header("idempotency-key").map(str::to_owned) else {
            return Arrival::Unkeyed;
        };
        if req.method == "GET" {
            return Arrival::Unkeyed;
        }
        if key.chars().count() > MAX_KEY_CHARS || key.is_empty() {
            let detail = format!("Idempotency-Key must be 1 to {MAX_KEY_CHARS} characters");
            return Arrival::Answer(super::error_response(super::Api::Orb, 400, &detail));
        }
        match self.keys.get(&key) {
            None => {
                self.keys.insert(
                    key.clone(),
                    Entry {
                        request: identity(req),
                        answer: None,
                    },
                );
                Arrival::Handle(key)
            }
            Some(entry) if entry.request != identity(req) => Arrival::Answer(conflict(
                &key,
                "was used for a request with different parameters",
            )),
            Some(Entry { answer: None, .. }) => Arrival::Answer(conflict(
                &key,
                "is in use by a request still being processed",
            )),
            Some(Entry {
                answer: Some(answer),
                ..
            }) => Arrival::Answer(
                answer
                    .clone()
                    .with_header("Idempotent-Replayed", "true")
                    .with_header("Idempotency-Key", &key),
            ),
        }
    }

    /// The answer to a keyed request: kept when Orb would keep it.
    pub(super) fn finish(&mut self, key: &str, answer: Response) -> Response {
        let kept = !matches!(answer.status, 409 | 429 | 500..=599);
        if kept {
            if let Some(entry) = self.keys.get_mut(key) {
                entry.answer = Some(answer.clone());
            }
        } else {
            self.keys.remove(key);
        }
        answer.with_header("Idempotency-Key", key)
    }

    /// As if Orb's 48 hours had passed for every key.
    pub(super) fn forget(&mut self) {
        self.keys.retain(|_, entry| entry.answer.is_none());
    }
}

fn conflict(key: &str, why: &str) -> Response {
    let detail = format!("Idempotency-Key {key} {why}");
    super::error_response(super::Api::Orb, 409, &detail).with_header("Idempotency-Key", key)
}
