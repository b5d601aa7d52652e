//! Sans-I/O tests of the scheduler, driven with synthetic instants.

use super::*;

const MIN: Duration = Duration::from_secs(60);
const ISS: &str = "https://idp.example";
const URI: &str = "https://idp.example/jwks";

fn jwks(kids: &[&str]) -> String {
    let keys: Vec<String> = kids
        .iter()
        .map(|kid| format!(r#"{{"kty":"RSA","kid":"{kid}","n":"AQAB","e":"AQAB"}}"#))
        .collect();
    format!(r#"{{"keys":[{}]}}"#, keys.join(","))
}

fn ok(uri: &str, kids: &[&str]) -> Result<Fetched, FetchError> {
    Ok(Fetched {
        jwks_uri: uri.to_owned(),
        body: jwks(kids).into(),
    })
}

fn fail(uri: &str) -> Result<Fetched, FetchError> {
    Err(FetchError::Status {
        uri: uri.to_owned(),
        status: 503,
        body: "down".to_owned(),
    })
}

fn k(uri: &str) -> Key {
    key(ISS, Some(uri))
}

/// Polls at `now` and asserts exactly the given URIs are handed out.
fn expect_jobs(s: &mut Scheduler, now: Instant, uris: &[&str]) {
    let poll = s.poll(now);
    let got: Vec<Option<String>> = poll
        .jobs
        .iter()
        .map(|j| j.request.jwks_uri.clone())
        .collect();
    let want: Vec<Option<String>> = uris.iter().map(|u| Some((*u).to_owned())).collect();
    assert_eq!(got, want);
}

/// Creates an entry for `uri` at `t0` and completes its first fetch with `result`.
fn first_fetch(s: &mut Scheduler, t0: Instant, uri: &str, result: Result<Fetched, FetchError>) {
    s.lookup(ISS, Some(uri), None, t0);
    expect_jobs(s, t0, &[uri]);
    s.complete(&k(uri), result, t0);
}

#[test]
fn a_miss_creates_a_pending_entry_that_is_due_now() {
    let mut s = Scheduler::new(ScheduleConfig::default());
    let t0 = Instant::now();
    let (state, created) = s.lookup(ISS, Some(URI), Some(Duration::from_secs(2)), t0);
    assert_eq!(state, KeySetState::Pending);
    assert!(created);
    assert_eq!(s.next_wake(), Some(t0));
    let poll = s.poll(t0);
    assert_eq!(
        poll.jobs,
        vec![Job {
            key: k(URI),
            request: FetchRequest {
                issuer: ISS.to_owned(),
                jwks_uri: Some(URI.to_owned()),
                timeout: Duration::from_secs(2),
            },
        }]
    );
    // In flight: a second lookup neither creates nor schedules anything.
    let (state, created) = s.lookup(ISS, Some(URI), None, t0);
    assert_eq!(state, KeySetState::Pending);
    assert!(!created);
    assert!(s.poll(t0).jobs.is_empty());
}

#[test]
fn an_empty_uri_means_discovery() {
    let mut s = Scheduler::new(ScheduleConfig::default());
    let t0 = Instant::now();
    s.lookup(ISS, Some(""), None, t0);
    let (_, created) = s.lookup(ISS, None, None, t0);
    assert!(!created, "empty and absent URIs are the same entry");
    let poll = s.poll(t0);
    assert_eq!(poll.jobs.len(), 1);
    assert_eq!(poll.jobs[0].request.jwks_uri, None);
    assert_eq!(poll.jobs[0].request.timeout, Duration::from_secs(5));
}

#[test]
fn success_makes_the_entry_ready_and_schedules_the_refresh_interval() {
    let mut s = Scheduler::new(ScheduleConfig::default());
    let t0 = Instant::now();
    s.lookup(ISS, Some(URI), None, t0);
    expect_jobs(&mut s, t0, &[URI]);
    let c = s.complete(&k(URI), ok(URI, &["a"]), t0);
    assert_eq!(
        c,
        Completion {
            keys_changed: true,
            status_changed: true,
            success: true
        }
    );
    let (state, _) = s.lookup(ISS, Some(URI), None, t0);
    let KeySetState::Ready {
        jwks,
        fetched_at,
        stale,
    } = state
    else {
        panic!("not ready: {state:?}");
    };
    assert!(jwks.contains("\"kid\":\"a\""));
    assert_eq!(fetched_at, t0);
    assert!(!stale);

    assert_eq!(s.next_wake(), Some(t0 + 20 * MIN));
    expect_jobs(&mut s, t0 + 20 * MIN - Duration::from_secs(1), &[]);
    expect_jobs(&mut s, t0 + 20 * MIN, &[URI]);
}

#[test]
fn backoff_doubles_per_uri_up_to_the_cap_and_resets_after_success() {
    let mut s = Scheduler::new(ScheduleConfig::default());
    let mut now = Instant::now();
    first_fetch(&mut s, now, URI, ok(URI, &["a"]));
    now += 20 * MIN;
    let mut delays = Vec::new();
    for _ in 0..9 {
        expect_jobs(&mut s, now, &[URI]);
        s.complete(&k(URI), fail(URI), now);
        let next = s.next_wake().unwrap();
        delays.push((next - now).as_secs() / 60);
        now = next;
    }
    assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60]);

    expect_jobs(&mut s, now, &[URI]);
    s.complete(&k(URI), ok(URI, &["a"]), now);
    assert_eq!(
        s.next_wake(),
        Some(now + 20 * MIN),
        "success resets to the interval"
    );
    now += 20 * MIN;
    expect_jobs(&mut s, now, &[URI]);
    s.complete(&k(URI), fail(URI), now);
    assert_eq!(s.next_wake(), Some(now + MIN), "backoff starts over at 1m");
}

#[test]
fn backoff_helper_saturates() {
    let c = ScheduleConfig::default();
    assert_eq!(backoff(&c, 1), MIN);
    assert_eq!(backoff(&c, 7), 60 * MIN);
    assert_eq!(backoff(&c, u32::MAX), 60 * MIN);
}

#[test]
fn a_failing_uri_does_not_delay_another() {
    const BAD: &str = "https://bad.example/jwks";
    let mut s = Scheduler::new(ScheduleConfig::default());
    let t0 = Instant::now();
    s.lookup(ISS, Some(URI), None, t0);
    s.lookup(ISS, Some(BAD), None, t0);
    let mut good_fetches = Vec::new();
    let mut bad_fetches = 0;
    let mut now = t0;
    while now < t0 + Duration::from_secs(5 * 3600) {
        for job in s.poll(now).jobs {
            let uri = job.request.jwks_uri.clone().unwrap();
            let result = if uri == BAD {
                bad_fetches += 1;
                fail(&uri)
            } else {
                good_fetches.push(now);
                ok(&uri, &["a"])
            };
            s.complete(&job.key, result, now);
        }
        // Keep both entries in use.
        s.lookup(ISS, Some(URI), None, now);
        s.lookup(ISS, Some(BAD), None, now);
        now = s.next_wake().unwrap();
    }
    let intervals: Vec<u64> = good_fetches
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs())
        .collect();
    assert_eq!(intervals.len(), 14);
    assert!(intervals.iter().all(|i| *i == 20 * 60), "{intervals:?}");
    // At 0, 1, 3, 7, 15, 31, 63, 123, 183 and 243 minutes: the bad URI backs off on its own.
    assert_eq!(bad_fetches, 10);
}

#[test]
fn an_equal_key_set_in_another_order_does_not_notify() {
    let mut s = Scheduler::new(ScheduleConfig::default());
    let t0 = Instant::now();
    first_fetch(&mut s, t0, URI, ok(URI, &["a", "b", "c"]));
    let t1 = t0 + 20 * MIN;
    expect_jobs(&mut s, t1, &[URI]);
    let c = s.complete(&k(URI), ok(URI, &["c", "a", "b"]), t1);
    assert_eq!(
        c,
        Completion {
            keys_changed: false,
            status_changed: false,
            success: true
        }
    );
    // A real change notifies.
    let t2 = t1 + 20 * MIN;
    expect_jobs(&mut s, t2, &[URI]);
    assert!(
        s.complete(&k(URI), ok(URI, &["a", "b", "d"]), t2)
            .keys_changed
    );
    assert_eq!(s.has_kid(ISS, Some(URI), "d"), Some(true));
    assert_eq!(s.has_kid(ISS, Some(URI), "c"), Some(false));
}

#[test]
fn stale_while_failing_keeps_the_last_good_set() {
    let mut s = Scheduler::new(ScheduleConfig::default());
    let t0 = Instant::now();
    first_fetch(&mut s, t0, URI, ok(URI, &["a"]));
    let (good, _) = s.lookup(ISS, Some(URI), None, t0);

    let mut now = t0 + 20 * MIN;
    let bad_results = [
        fail(URI),
        Ok(Fetched {
            jwks_uri: URI.to_owned(),
            body: "<html>oops</html>".into(),
        }),
        Ok(Fetched {
            jwks_uri: URI.to_owned(),
            body: r#"{"keys":[]}"#.into(),
        }),
    ];
    for (i, result) in bad_results.into_iter().enumerate() {
        expect_jobs(&mut s, now, &[URI]);
        let c = s.complete(&k(URI), result, now);
        assert!(!c.keys_changed && !c.success);
        assert_eq!(c.status_changed, i == 0, "ok -> stale once");
        let (state, _) = s.lookup(ISS, Some(URI), None, now);
        let KeySetState::Ready {
            jwks,
            fetched_at,
            stale,
        } = state
        else {
            panic!("{state:?}");
        };
        assert_eq!(Some(&jwks), good_jwks(&good));
        assert_eq!(fetched_at, t0);
        assert!(stale);
        let status = s.status(ISS, Some(URI)).unwrap();
        assert_eq!(status.reason(), "RefreshFailed");
        assert!(status.message().unwrap().contains(URI), "{status:?}");
        now = s.next_wake().unwrap();
    }
    expect_jobs(&mut s, now, &[URI]);
    let c = s.complete(&k(URI), ok(URI, &["a"]), now);
    assert!(!c.keys_changed && c.status_changed && c.success);
    assert_eq!(s.status(ISS, Some(URI)), Some(JwksStatus::Ok));
}

fn good_jwks(state: &KeySetState) -> Option<&Arc<str>> {
    match state {
        KeySetState::Ready { jwks, .. } => Some(jwks),
        _ => None,
    }
}

#[test]
fn a_failed_first_fetch_notifies_once_and_then_retries_with_backoff() {
    let mut s = Scheduler::new(ScheduleConfig::default());
    let t0 = Instant::now();
    s.lookup(ISS, Some(URI), None, t0);
    expect_jobs(&mut s, t0, &[URI]);
    let c = s.complete(&k(URI), fail(URI), t0);
    assert!(c.keys_changed && c.status_changed && !c.success);
    let (state, _) = s.lookup(ISS, Some(URI), None, t0);
    let KeySetState::Failed { error } = &state else {
        panic!("{state:?}");
    };
    assert!(error.contains("HTTP 503"), "{error}");
    assert_eq!(state.jwks_or_fallback(), crate::never_matching_jwks());
    assert_eq!(s.has_kid(ISS, Some(URI), "a"), None);

    let t1 = t0 + MIN;
    expect_jobs(&mut s, t1, &[URI]);
    let c = s.complete(&k(URI), fail(URI), t1);
    assert!(!c.keys_changed && !c.status_changed);
    let t2 = t1 + 2 * MIN;
    expect_jobs(&mut s, t2, &[URI]);
    let c = s.complete(&k(URI), ok(URI, &["a"]), t2);
    assert!(c.keys_changed && c.status_changed);
}

#[test]
fn an_invalid_first_body_fails_with_the_uri() {
    let mut s = Scheduler::new(ScheduleConfig::default());
    let t0 = Instant::now();
    let body = Ok(Fetched {
        jwks_uri: URI.to_owned(),
        body: r#"{"keys":5}"#.into(),
    });
    first_fetch(&mut s, t0, URI, body);
    let status = s.status(ISS, Some(URI)).unwrap();
    assert_eq!(status.reason(), "FetchFailed");
    assert_eq!(
        status.message(),
        Some(
            format!("invalid JWKS from {URI}: JWKS \"keys\" must be an array, got a number")
                .as_str()
        )
    );
}

#[test]
fn entries_unused_for_seven_days_are_evicted() {
    let day = Duration::from_secs(24 * 3600);
    let mut s = Scheduler::new(ScheduleConfig::default());
    let t0 = Instant::now();
    first_fetch(&mut s, t0, URI, ok(URI, &["a"]));
    first_fetch(
        &mut s,
        t0,
        "https://used.example/jwks",
        ok("https://used.example/jwks", &["b"]),
    );
    // Refresh both for 7 days, but only look up the second one.
    let mut now = t0;
    while now < t0 + 7 * day {
        now = s.next_wake().unwrap();
        s.lookup(ISS, Some("https://used.example/jwks"), None, now);
        let poll = s.poll(now);
        if poll.evicted > 0 {
            assert_eq!(now, t0 + 7 * day);
            assert_eq!(poll.evicted_with_keys, 1);
            break;
        }
        for job in poll.jobs {
            let uri = job.request.jwks_uri.clone().unwrap();
            s.complete(&job.key, ok(&uri, &["a"]), now);
        }
    }
    let left: Vec<_> = s.entries(now).into_iter().map(|e| e.jwks_uri).collect();
    assert_eq!(left, vec![Some("https://used.example/jwks".to_owned())]);
    // Looking it up again starts over.
    let (state, created) = s.lookup(ISS, Some(URI), None, now);
    assert_eq!(state, KeySetState::Pending);
    assert!(created);
}

#[test]
fn entries_not_refreshed_for_seven_days_are_evicted_even_if_used() {
    let day = Duration::from_secs(24 * 3600);
    let mut s = Scheduler::new(ScheduleConfig::default());
    let t0 = Instant::now();
    first_fetch(&mut s, t0, URI, ok(URI, &["a"]));
    let now = loop {
        let now = s.next_wake().unwrap();
        s.lookup(ISS, Some(URI), None, now);
        let poll = s.poll(now);
        if poll.evicted > 0 {
            break now;
        }
        for job in poll.jobs {
            s.complete(&job.key, fail(URI), now);
        }
    };
    assert_eq!(now, t0 + 7 * day);
    assert!(s.entries(now).is_empty());
}

#[test]
fn forced_refresh_is_rate_limited_per_entry() {
    let mut s = Scheduler::new(ScheduleConfig::default());
    let t0 = Instant::now();
    assert_eq!(
        s.request_refresh(ISS, Some(URI), t0),
        RefreshRequest::UnknownEntry
    );
    s.lookup(ISS, Some(URI), None, t0);
    expect_jobs(&mut s, t0, &[URI]);
    assert_eq!(
        s.request_refresh(ISS, Some(URI), t0),
        RefreshRequest::InFlight
    );
    s.complete(&k(URI), ok(URI, &["a"]), t0 + Duration::from_secs(1));

    let t1 = t0 + Duration::from_secs(10);
    assert_eq!(
        s.request_refresh(ISS, Some(URI), t1),
        RefreshRequest::RateLimited {
            retry_after: Duration::from_secs(20)
        }
    );
    // Deferred, not dropped: nothing now, a fetch as soon as the limit allows.
    expect_jobs(&mut s, t1, &[]);
    let t2 = t0 + Duration::from_secs(30);
    assert_eq!(s.next_wake(), Some(t2));
    expect_jobs(&mut s, t2, &[URI]);
    s.complete(&k(URI), ok(URI, &["a", "new"]), t2);
    assert_eq!(s.has_kid(ISS, Some(URI), "new"), Some(true));
    // Without further requests the regular refresh is 20m after the forced one.
    assert_eq!(s.next_wake(), Some(t2 + 20 * MIN));
    // An immediate request after the limit passed is scheduled at once.
    let t3 = t2 + Duration::from_secs(30);
    assert_eq!(
        s.request_refresh(ISS, Some(URI), t3),
        RefreshRequest::Scheduled
    );
    assert_eq!(s.next_wake(), Some(t3));
    expect_jobs(&mut s, t3, &[URI]);
    s.complete(&k(URI), ok(URI, &["a", "new"]), t3);
    // Straight after: limited again, deferred by the limit.
    assert!(matches!(
        s.request_refresh(ISS, Some(URI), t3 + Duration::from_secs(1)),
        RefreshRequest::RateLimited { .. }
    ));
    assert_eq!(s.next_wake(), Some(t3 + Duration::from_secs(30)));
    // Other entries are not affected by this entry's limit.
    s.lookup(ISS, Some("https://other.example/jwks"), None, t2);
    expect_jobs(&mut s, t2, &["https://other.example/jwks"]);
}

#[test]
fn concurrency_is_capped_without_busy_waking() {
    let mut s = Scheduler::new(ScheduleConfig {
        max_concurrent_fetches: 2,
        ..ScheduleConfig::default()
    });
    let t0 = Instant::now();
    for uri in ["https://a/", "https://b/", "https://c/"] {
        s.lookup(ISS, Some(uri), None, t0);
    }
    expect_jobs(&mut s, t0, &["https://a/", "https://b/"]);
    // At capacity: the next wake is not the (past) due time of c.
    assert!(s.next_wake().unwrap() > t0);
    s.complete(&k("https://a/"), ok("https://a/", &["a"]), t0);
    assert_eq!(s.next_wake(), Some(t0));
    expect_jobs(&mut s, t0, &["https://c/"]);
}

#[test]
fn entries_report_diagnostics() {
    let mut s = Scheduler::new(ScheduleConfig::default());
    let t0 = Instant::now();
    first_fetch(&mut s, t0, URI, ok(URI, &["b", "a"]));
    let t1 = t0 + 20 * MIN;
    expect_jobs(&mut s, t1, &[URI]);
    s.complete(&k(URI), fail(URI), t1);
    let info = s.entries(t1 + Duration::from_secs(30));
    assert_eq!(info.len(), 1);
    let e = &info[0];
    assert_eq!(e.issuer, ISS);
    assert_eq!(e.jwks_uri.as_deref(), Some(URI));
    assert_eq!(e.fetched_uri.as_deref(), Some(URI));
    assert_eq!(e.key_count, 2);
    assert_eq!(e.kids, ["a", "b"]);
    assert_eq!(e.last_success_age_secs, Some(20 * 60 + 30));
    assert_eq!(e.next_refresh_in_secs, Some(30));
    assert_eq!(e.consecutive_failures, 1);
    assert!(e.last_error.as_deref().unwrap().contains("HTTP 503"));
    let json = serde_json::to_value(e).unwrap();
    assert_eq!(json["status"], "stale");
    assert_eq!(json["timeout"], 5.0);
    assert!(json["message"].as_str().unwrap().contains(URI));
}
