//! The credentials requests are signed with, renewed when they are temporary
//! (a web identity's, a container's, the instance's): a backfill outlives
//! them. They are fetched again from the provider they came from a few
//! minutes before they expire, as AWS's SDKs do, and once more when S3 says
//! they expired all the same (a clock off, a role's session revoked).
//!
//! Objects are read on several threads at once: one renews, the others wait
//! for it and sign with the new credentials.

use std::sync::Mutex;

use jiff::{SignedDuration, Timestamp};
use rusty_s3::Credentials;

use super::credentials::{Found, Provider};

/// How long before their expiry credentials are renewed.
pub(super) const MARGIN: SignedDuration = SignedDuration::from_secs(5 * 60);

/// The credentials in use, and how to renew them.
pub(super) struct Keys {
    /// Where they came from, for messages (never the keys).
    from: String,
    /// None: they do not expire (the environment's, the profile files').
    provider: Option<Provider>,
    /// Held while renewing: the other threads wait for the new credentials.
    state: Mutex<State>,
    /// The agent STS is asked with.
    agent: ureq::Agent,
    /// Says each renewal on standard error (`-v`).
    verbose: bool,
    /// The time now: the tests set their own.
    now: fn() -> Timestamp,
}

struct State {
    keys: Credentials,
    expires: Option<Timestamp>,
    /// Counts renewals: a request signed with an older generation that S3
    /// refused needs no renewal of its own.
    generation: u64,
}

/// The credentials to sign one request with.
pub(super) struct Current {
    pub keys: Credentials,
    pub generation: u64,
}

impl Keys {
    pub(super) fn new(found: Found, agent: ureq::Agent, verbose: bool) -> Keys {
        Keys {
            from: found.from,
            provider: found.provider,
            state: Mutex::new(State {
                keys: found.keys,
                expires: found.expires,
                generation: 0,
            }),
            agent,
            verbose,
            now: Timestamp::now,
        }
    }

    #[cfg(test)]
    fn with_clock(mut self, now: fn() -> Timestamp) -> Keys {
        self.now = now;
        self
    }

    /// The credentials to sign with now: renewed first when they expire
    /// within [`MARGIN`]. A renewal that fails while they are still valid
    /// leaves them in use (S3 will say when they are not); once expired,
    /// its failure is the request's.
    pub(super) fn current(&self) -> Result<Current, String> {
        let mut state = self.state.lock().expect("credentials");
        if let (Some(provider), Some(expires)) = (&self.provider, state.expires) {
            let now = (self.now)();
            if expires.duration_since(now) <= MARGIN {
                let why = format!("they expire at {expires}");
                if let Err(error) = self.renew(provider, &mut state, &why)
                    && expires <= now
                {
                    return Err(error);
                }
            }
        }
        Ok(Current {
            keys: state.keys.clone(),
            generation: state.generation,
        })
    }

    /// S3 refused the credentials of generation `used` as expired (`code`):
    /// renewed, unless another thread did already. False when they cannot
    /// be renewed (they are not temporary).
    pub(super) fn renew_after_refusal(&self, used: u64, code: &str) -> Result<bool, String> {
        let Some(provider) = &self.provider else {
            return Ok(false);
        };
        let mut state = self.state.lock().expect("credentials");
        if state.generation == used {
            self.renew(provider, &mut state, &format!("S3 answered {code}"))?;
        }
        Ok(true)
    }

    fn renew(&self, provider: &Provider, state: &mut State, why: &str) -> Result<(), String> {
        let found = provider
            .fetch(&self.agent)
            .map_err(|error| format!("the credentials could not be renewed ({error})"))?;
        state.keys = found.keys;
        state.expires = found.expires;
        state.generation += 1;
        if self.verbose {
            let until = found.expires.map_or_else(
                || "no expiry given".to_owned(),
                |t| format!("valid until {t}"),
            );
            crate::console::stderr_line(&format!(
                "segrelay: renewed the credentials from {}: {why}; the new ones are {until}",
                self.from
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
