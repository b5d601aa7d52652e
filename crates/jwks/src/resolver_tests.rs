//! Resolver tests: the refresher loop on a paused clock with an in-memory fetcher, and a few
//! end-to-end runs against a real loopback server on the real clock.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use parking_lot::Mutex;
use tokio::sync::oneshot;

use super::*;
use crate::fetch::{FetchFuture, FetchRequest};
use crate::never_matching_jwks;

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

/// An in-memory fetcher: a scripted answer per JWKS URI, and a log of calls with their instant.
#[derive(Default)]
struct FakeFetcher {
    answers: Mutex<HashMap<String, Result<String, u16>>>,
    calls: Mutex<Vec<(Instant, FetchRequest)>>,
    hang: Mutex<bool>,
}

impl FakeFetcher {
    fn answer(&self, uri: &str, answer: Result<String, u16>) {
        self.answers.lock().insert(uri.to_owned(), answer);
    }

    fn calls_for(&self, uri: &str) -> Vec<Instant> {
        self.calls
            .lock()
            .iter()
            .filter(|(_, r)| r.jwks_uri.as_deref() == Some(uri))
            .map(|(t, _)| *t)
            .collect()
    }
}

impl Fetch for FakeFetcher {
    fn fetch(&self, req: FetchRequest) -> FetchFuture {
        self.calls.lock().push((Instant::now(), req.clone()));
        let uri = req
            .jwks_uri
            .unwrap_or_else(|| format!("{}/discovered", req.issuer));
        let answer = self.answers.lock().get(&uri).cloned().unwrap_or(Err(404));
        if *self.hang.lock() {
            return Box::pin(std::future::pending());
        }
        Box::pin(async move {
            match answer {
                Ok(body) => Ok(Fetched {
                    jwks_uri: uri,
                    body: body.into(),
                }),
                Err(status) => Err(FetchError::Status {
                    uri,
                    status,
                    body: String::new(),
                }),
            }
        })
    }
}

struct Harness {
    resolver: JwksResolver,
    fake: Arc<FakeFetcher>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Harness {
    fn start() -> Self {
        let fake = Arc::new(FakeFetcher::default());
        let resolver =
            JwksResolver::with_fetcher(ScheduleConfig::default(), fake.clone(), Metrics::default());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = resolver.spawn(async move {
            let _ = stopped.await;
        });
        Self {
            resolver,
            fake,
            stop: Some(stop),
            task: Some(task),
        }
    }

    async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(5), self.task.take().unwrap())
            .await
            .expect("refresher stops on shutdown")
            .unwrap();
    }
}

/// Polls `cond` (advancing the paused clock by 1s steps) until it holds; fails after a day.
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(24 * 3600);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn changed(rx: &mut watch::Receiver<u64>) {
    tokio::time::timeout(Duration::from_secs(3600), rx.changed())
        .await
        .expect("a change notification")
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn lookup_is_non_blocking_and_notifies_when_the_first_fetch_completes() {
    let h = Harness::start();
    h.fake.answer(URI, Ok(jwks(&["a"])));
    let mut rx = h.resolver.changes();
    assert_eq!(
        h.resolver.lookup(ISS, Some(URI), None),
        KeySetState::Pending
    );
    changed(&mut rx).await;
    let state = h.resolver.lookup(ISS, Some(URI), None);
    assert!(state.is_ready(), "{state:?}");
    assert!(state.jwks_or_fallback().contains("\"kid\":\"a\""));
    assert_eq!(h.resolver.has_kid(ISS, Some(URI), "a"), Some(true));
    assert_eq!(h.resolver.status(ISS, Some(URI)), Some(JwksStatus::Ok));
    assert_eq!(h.resolver.metrics().successes(ISS), 1);
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn refreshes_every_interval() {
    let h = Harness::start();
    h.fake.answer(URI, Ok(jwks(&["a"])));
    h.resolver.lookup(ISS, Some(URI), None);
    wait_until("3 fetches", || h.fake.calls_for(URI).len() >= 3).await;
    let calls = h.fake.calls_for(URI);
    assert_eq!(calls[1] - calls[0], 20 * MIN);
    assert_eq!(calls[2] - calls[1], 20 * MIN);
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn backoff_is_per_uri_and_resets_after_success() {
    const BAD: &str = "https://bad.example/jwks";
    let h = Harness::start();
    h.fake.answer(URI, Ok(jwks(&["a"])));
    h.fake.answer(BAD, Err(503));
    h.resolver.lookup(ISS, Some(URI), None);
    h.resolver.lookup(ISS, Some(BAD), None);
    wait_until("bad URI fetched 8 times", || {
        h.fake.calls_for(BAD).len() >= 8
    })
    .await;
    let bad = h.fake.calls_for(BAD);
    let gaps: Vec<u64> = bad
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs() / 60)
        .collect();
    assert_eq!(gaps, [1, 2, 4, 8, 16, 32, 60]);
    let good = h.fake.calls_for(URI);
    assert!(good.windows(2).all(|w| w[1] - w[0] == 20 * MIN), "{good:?}");
    assert_eq!(
        good.len(),
        1 + ((bad[7] - bad[0]).as_secs() / (20 * 60)) as usize
    );

    // The bad URI recovers: its next fetch succeeds and the interval is back to 20m.
    h.fake.answer(BAD, Ok(jwks(&["b"])));
    wait_until("recovery", || h.fake.calls_for(BAD).len() >= 10).await;
    let bad = h.fake.calls_for(BAD);
    assert_eq!(bad[8] - bad[7], 60 * MIN);
    assert_eq!(bad[9] - bad[8], 20 * MIN);
    assert_eq!(h.resolver.metrics().failures(ISS), 8);
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_equal_set_in_another_order_does_not_notify_but_a_new_key_does() {
    let h = Harness::start();
    h.fake.answer(URI, Ok(jwks(&["a", "b"])));
    let mut rx = h.resolver.changes();
    h.resolver.lookup(ISS, Some(URI), None);
    changed(&mut rx).await;
    rx.mark_unchanged();

    h.fake.answer(URI, Ok(jwks(&["b", "a"])));
    wait_until("second fetch", || h.fake.calls_for(URI).len() >= 2).await;
    assert!(!rx.has_changed().unwrap(), "reordered set must not notify");

    h.fake.answer(URI, Ok(jwks(&["b", "c"])));
    changed(&mut rx).await;
    assert_eq!(h.fake.calls_for(URI).len(), 3);
    assert_eq!(h.resolver.has_kid(ISS, Some(URI), "c"), Some(true));
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn stale_while_failing_then_recovery_bumps_status_only() {
    let h = Harness::start();
    h.fake.answer(URI, Ok(jwks(&["a"])));
    let mut keys_rx = h.resolver.changes();
    let mut status_rx = h.resolver.status_changes();
    h.resolver.lookup(ISS, Some(URI), None);
    changed(&mut keys_rx).await;
    let KeySetState::Ready { jwks: good, .. } = h.resolver.lookup(ISS, Some(URI), None) else {
        panic!("not ready");
    };
    keys_rx.mark_unchanged();
    status_rx.mark_unchanged();

    h.fake
        .answer(URI, Ok("<html>maintenance</html>".to_owned()));
    changed(&mut status_rx).await;
    let state = h.resolver.lookup(ISS, Some(URI), None);
    assert!(
        matches!(&state, KeySetState::Ready { jwks, stale: true, .. } if *jwks == good),
        "{state:?}"
    );
    let status = h.resolver.status(ISS, Some(URI)).unwrap();
    assert!(
        status.message().unwrap().contains("invalid JWKS from"),
        "{status:?}"
    );

    h.fake.answer(URI, Ok(jwks(&["a"])));
    changed(&mut status_rx).await;
    assert_eq!(h.resolver.status(ISS, Some(URI)), Some(JwksStatus::Ok));
    assert!(!keys_rx.has_changed().unwrap(), "same keys throughout");
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_first_fetch_is_reported_and_falls_back_to_the_never_matching_jwks() {
    let h = Harness::start();
    let mut rx = h.resolver.changes();
    h.resolver.lookup(ISS, Some(URI), None);
    changed(&mut rx).await;
    let state = h.resolver.lookup(ISS, Some(URI), None);
    assert!(
        matches!(&state, KeySetState::Failed { error } if error.contains(URI)),
        "{state:?}"
    );
    assert_eq!(state.jwks_or_fallback(), never_matching_jwks());
    assert_eq!(h.resolver.metrics().failures(ISS), 1);
    // The retry one minute later succeeds.
    h.fake.answer(URI, Ok(jwks(&["a"])));
    changed(&mut rx).await;
    let calls = h.fake.calls_for(URI);
    assert_eq!(calls[1] - calls[0], MIN);
    assert!(h.resolver.lookup(ISS, Some(URI), None).is_ready());
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn request_refresh_refetches_at_once_and_is_rate_limited() {
    let h = Harness::start();
    h.fake.answer(URI, Ok(jwks(&["old"])));
    let mut rx = h.resolver.changes();
    assert_eq!(
        h.resolver.request_refresh(ISS, Some(URI)),
        RefreshRequest::UnknownEntry
    );
    h.resolver.lookup(ISS, Some(URI), None);
    changed(&mut rx).await;
    let t0 = h.fake.calls_for(URI)[0];

    // The IdP rotates; a token with kid "new" shows up 10s later.
    tokio::time::sleep(Duration::from_secs(10)).await;
    h.fake.answer(URI, Ok(jwks(&["new"])));
    assert_eq!(h.resolver.has_kid(ISS, Some(URI), "new"), Some(false));
    assert_eq!(
        h.resolver.request_refresh(ISS, Some(URI)),
        RefreshRequest::RateLimited {
            retry_after: Duration::from_secs(20)
        }
    );
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(
        h.resolver.request_refresh(ISS, Some(URI)),
        RefreshRequest::Scheduled
    );
    changed(&mut rx).await;
    let calls = h.fake.calls_for(URI);
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1] - t0, Duration::from_secs(30));
    assert_eq!(h.resolver.has_kid(ISS, Some(URI), "new"), Some(true));
    assert!(matches!(
        h.resolver.request_refresh(ISS, Some(URI)),
        RefreshRequest::RateLimited { .. }
    ));
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn unused_entries_are_evicted_after_seven_days() {
    let h = Harness::start();
    h.fake.answer(URI, Ok(jwks(&["a"])));
    let mut rx = h.resolver.changes();
    h.resolver.lookup(ISS, Some(URI), None);
    changed(&mut rx).await;
    let created = Instant::now();
    // The eviction removes keys: that is a key set change.
    tokio::time::timeout(Duration::from_secs(8 * 24 * 3600), rx.changed())
        .await
        .expect("eviction within 8 days")
        .unwrap();
    assert_eq!(Instant::now() - created, Duration::from_secs(7 * 24 * 3600));
    assert!(h.resolver.entries().is_empty());
    assert_eq!(
        h.resolver.lookup(ISS, Some(URI), None),
        KeySetState::Pending
    );
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_aborts_fetches_in_flight() {
    let h = Harness::start();
    *h.fake.hang.lock() = true;
    h.resolver.lookup(ISS, Some(URI), None);
    wait_until("fetch started", || h.fake.calls_for(URI).len() == 1).await;
    assert!(h.resolver.entries()[0].in_flight);
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_fetcher_ignoring_its_timeout_is_cut_off() {
    let h = Harness::start();
    *h.fake.hang.lock() = true;
    let mut rx = h.resolver.changes();
    h.resolver
        .lookup(ISS, Some(URI), Some(Duration::from_secs(1)));
    changed(&mut rx).await;
    let status = h.resolver.status(ISS, Some(URI)).unwrap();
    assert!(
        status.message().unwrap().contains("timed out"),
        "{status:?}"
    );
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn discovery_entries_are_fetched_without_a_uri() {
    let h = Harness::start();
    h.fake
        .answer(&format!("{ISS}/discovered"), Ok(jwks(&["d"])));
    let mut rx = h.resolver.changes();
    h.resolver.lookup(ISS, Some(""), None);
    changed(&mut rx).await;
    assert!(h.resolver.lookup(ISS, None, None).is_ready());
    let info = h.resolver.entries();
    assert_eq!(info[0].jwks_uri, None);
    assert_eq!(
        info[0].fetched_uri.as_deref(),
        Some(format!("{ISS}/discovered").as_str())
    );
    h.shutdown().await;
}

// --- real sockets, real clock ---

fn http_resolver() -> JwksResolver {
    let config = ResolverConfig {
        http: HttpConfig {
            use_env_proxy: false,
            ..HttpConfig::default()
        },
        ..ResolverConfig::default()
    };
    JwksResolver::new(config, Metrics::default()).unwrap()
}

async fn loopback_idp() -> crate::fetch::tests::TestServer {
    crate::fetch::tests::TestServer::start(|addr| {
        Router::new()
            .route("/jwks", get(|| async { jwks(&["k1", "k2"]) }))
            .route(
                "/.well-known/openid-configuration",
                get(move || async move { format!(r#"{{"jwks_uri":"http://{addr}/jwks"}}"#) }),
            )
            .route(
                "/metadata-redirect",
                get(|| async { axum::response::Redirect::to("http://169.254.169.254/latest/") }),
            )
    })
    .await
}

#[tokio::test]
async fn end_to_end_over_http_with_discovery_and_ssrf() {
    let idp = loopback_idp().await;
    let resolver = http_resolver();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = resolver.spawn(async move {
        let _ = stopped.await;
    });
    let mut rx = resolver.changes();
    let issuer = idp.url("/");
    let direct = idp.url("/jwks");
    let blocked = idp.url("/metadata-redirect");
    assert_eq!(
        resolver.lookup(&issuer, Some(&direct), None),
        KeySetState::Pending
    );
    assert_eq!(resolver.lookup(&issuer, None, None), KeySetState::Pending);
    assert_eq!(
        resolver.lookup(&issuer, Some(&blocked), None),
        KeySetState::Pending
    );

    let settled = || {
        resolver
            .entries()
            .iter()
            .all(|e| !matches!(e.status, JwksStatus::Pending))
    };
    tokio::time::timeout(Duration::from_secs(10), async {
        while !settled() {
            rx.changed().await.unwrap();
        }
    })
    .await
    .expect("all entries settle");

    assert_eq!(resolver.has_kid(&issuer, Some(&direct), "k2"), Some(true));
    assert_eq!(resolver.has_kid(&issuer, None, "k1"), Some(true));
    let status = resolver.status(&issuer, Some(&blocked)).unwrap();
    assert_eq!(status.reason(), "FetchFailed");
    assert!(
        status.message().unwrap().contains("169.254.169.254"),
        "{status:?}"
    );
    assert!(status.message().unwrap().contains(&blocked), "{status:?}");
    assert_eq!(
        resolver
            .lookup(&issuer, Some(&blocked), None)
            .jwks_or_fallback(),
        never_matching_jwks()
    );
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
}
