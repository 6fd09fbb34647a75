//! Renewals against a loopback container endpoint handing out credentials
//! that expire soon: fetched again before they expire, once for all threads,
//! once per refusal, and a failed renewal said.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::*;
use crate::input::s3::credentials::tests::{Seen, loopback_with};

/// A container credentials document for key `id`, expiring at `expires`.
fn document(id: &str, expires: Timestamp) -> String {
    format!(
        r#"{{"AccessKeyId":"{id}","SecretAccessKey":"secret-of-{id}","Token":"token-of-{id}","Expiration":"{expires}"}}"#
    )
}

/// A container endpoint answering `answers` in turn, the last one again and
/// again; and the requests it was sent.
fn endpoint(answers: Vec<(u16, String)>) -> (Provider, Arc<Mutex<Vec<Seen>>>) {
    let next = AtomicUsize::new(0);
    let (url, seen) = loopback_with(move |_, _| {
        let n = next.fetch_add(1, Ordering::SeqCst);
        answers[n.min(answers.len() - 1)].clone()
    });
    let provider = Provider::Container {
        url: format!("{url}/creds"),
        authorization: None,
    };
    (provider, seen)
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

fn keys_from(provider: &Provider) -> Keys {
    Keys::new(provider.fetch(&agent()).unwrap(), agent(), false)
}

fn in_minutes(minutes: i64) -> Timestamp {
    Timestamp::now() + SignedDuration::from_mins(minutes)
}

#[test]
fn credentials_expiring_within_the_margin_are_renewed_before_the_next_request() {
    let (provider, seen) = endpoint(vec![
        (200, document("ASIAFIRST", in_minutes(1))),
        (200, document("ASIASECOND", in_minutes(60))),
    ]);
    let keys = keys_from(&provider);
    assert_eq!(seen.lock().unwrap().len(), 1);
    let current = keys.current().unwrap();
    assert_eq!(current.keys.key(), "ASIASECOND");
    assert_eq!(current.keys.token(), Some("token-of-ASIASECOND"));
    assert_eq!(current.generation, 1);
    // The new ones are good for an hour: no more fetches.
    for _ in 0..3 {
        assert_eq!(keys.current().unwrap().keys.key(), "ASIASECOND");
    }
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[test]
fn the_margin_is_five_minutes_before_the_expiry() {
    let expires: Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
    let (provider, seen) = endpoint(vec![(200, document("ASIAKEY", expires))]);
    let early = keys_from(&provider).with_clock(|| "2029-12-31T23:54:59Z".parse().unwrap());
    assert_eq!(early.current().unwrap().generation, 0);
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "not renewed 5 min 1 s before"
    );
    let late = keys_from(&provider).with_clock(|| "2029-12-31T23:55:00Z".parse().unwrap());
    assert_eq!(late.current().unwrap().generation, 1);
    assert_eq!(seen.lock().unwrap().len(), 3, "renewed 5 min before");
}

#[test]
fn one_thread_renews_and_the_others_sign_with_the_new_credentials() {
    let (provider, seen) = endpoint(vec![
        (200, document("ASIAFIRST", in_minutes(1))),
        (200, document("ASIASECOND", in_minutes(60))),
        (200, document("ASIATHIRD", in_minutes(60))),
    ]);
    let keys = Arc::new(keys_from(&provider));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let keys = keys.clone();
            std::thread::spawn(move || keys.current().unwrap().keys.key().to_owned())
        })
        .collect();
    for thread in threads {
        assert_eq!(thread.join().unwrap(), "ASIASECOND");
    }
    assert_eq!(seen.lock().unwrap().len(), 2, "found, then renewed once");
}

#[test]
fn a_refusal_renews_once_for_the_credentials_refused() {
    let (provider, seen) = endpoint(vec![
        (200, document("ASIAFIRST", in_minutes(60))),
        (200, document("ASIASECOND", in_minutes(60))),
    ]);
    let keys = keys_from(&provider);
    let used = keys.current().unwrap();
    assert_eq!(
        (used.keys.key(), seen.lock().unwrap().len()),
        ("ASIAFIRST", 1)
    );
    assert!(
        keys.renew_after_refusal(used.generation, "ExpiredToken")
            .unwrap()
    );
    // Another request signed with the same credentials, refused too: they
    // were renewed already.
    assert!(
        keys.renew_after_refusal(used.generation, "ExpiredToken")
            .unwrap()
    );
    assert_eq!(keys.current().unwrap().keys.key(), "ASIASECOND");
    assert_eq!(seen.lock().unwrap().len(), 2);

    // Keys that do not expire are not renewed: the refusal stands.
    let fixed = Keys::new(
        Found {
            keys: Credentials::new("AKIAFIXED", "fixed-secret"),
            from: "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".to_owned(),
            expires: None,
            provider: None,
        },
        agent(),
        false,
    );
    assert!(!fixed.renew_after_refusal(0, "ExpiredToken").unwrap());
}

#[test]
fn a_failed_renewal_keeps_valid_credentials_and_fails_expired_ones() {
    let expires: Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
    let (provider, seen) = endpoint(vec![
        (200, document("ASIAFIRST", expires)),
        (500, String::new()),
    ]);
    let still_valid = keys_from(&provider).with_clock(|| "2029-12-31T23:58:00Z".parse().unwrap());
    assert_eq!(still_valid.current().unwrap().keys.key(), "ASIAFIRST");
    assert_eq!(
        seen.lock().unwrap().len(),
        2,
        "found, then one renewal tried"
    );
    let expired = Keys::new(
        Found {
            keys: Credentials::new("ASIAFIRST", "secret-of-ASIAFIRST"),
            from: "the container credentials endpoint".to_owned(),
            expires: Some(expires),
            provider: Some(provider),
        },
        agent(),
        false,
    )
    .with_clock(|| "2030-01-01T00:00:01Z".parse().unwrap());
    let error = expired.current().err().unwrap();
    assert!(
        error.starts_with(
            "the credentials could not be renewed (the container credentials endpoint"
        ),
        "{error}"
    );
    assert!(error.contains("HTTP 500"), "{error}");
    assert!(!error.contains("secret-of"), "{error}");
    let error = still_valid
        .renew_after_refusal(0, "ExpiredToken")
        .err()
        .unwrap();
    assert!(error.contains("could not be renewed"), "{error}");
}
