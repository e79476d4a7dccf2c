//! Tests of the nats broker against the real server.

//! Against the NATS server the machines run (BATCHPROC_TEST_NATS,
//! default nats://127.0.0.1:4222), each test on a stream of its own.

use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32};

use async_nats::jetstream::stream;

use super::*;

fn server_url() -> String {
    std::env::var("BATCHPROC_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// A stream `NAME` (subjects `NAME.>`) with a client of the test's own,
/// deleted on drop.
struct Fixture {
    rt: Runtime,
    js: jetstream::Context,
    name: String,
}

impl Fixture {
    /// None (said loudly) when there is no server, except under CI.
    fn new() -> Option<Fixture> {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "bp_unit_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let url = server_url();
        let created = rt.block_on(async {
            let client = async_nats::ConnectOptions::new()
                .connection_timeout(Duration::from_secs(2))
                .connect(url.as_str())
                .await?;
            let js = jetstream::new(client);
            js.create_stream(stream::Config {
                name: name.clone(),
                subjects: vec![format!("{name}.>")],
                ..Default::default()
            })
            .await?;
            Ok::<_, async_nats::Error>(js)
        });
        match created {
            Ok(js) => Some(Fixture { rt, js, name }),
            Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
                panic!("NATS at {url} is unreachable under CI: {e}")
            }
            Err(e) => {
                eprintln!("\n*** SKIPPED: NATS at {url} is unreachable ({e}) ***\n");
                None
            }
        }
    }

    /// Publishes `m0`, `m1`… on `NAME.x`, stored once this returns.
    fn publish(&self, n: usize) {
        self.rt.block_on(async {
            let mut acks = Vec::new();
            for i in 0..n {
                let subject = format!("{}.x", self.name);
                acks.push(
                    self.js
                        .publish(subject, format!("m{i}").into())
                        .await
                        .unwrap(),
                );
            }
            for ack in acks {
                ack.await.unwrap();
            }
        })
    }

    fn open(&self, lease: Duration) -> Nats {
        Nats::open(&server_url(), &self.name, "c", lease).unwrap()
    }

    fn add_consumer(&self, config: consumer::Config) {
        self.rt.block_on(async {
            let stream = self.js.get_stream(&self.name).await.unwrap();
            stream.create_consumer(config).await.unwrap();
        });
    }

    fn consumer_info(&self) -> consumer::Info {
        self.rt.block_on(async {
            let stream = self.js.get_stream(&self.name).await.unwrap();
            stream.consumer_info("c").await.unwrap()
        })
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.rt.block_on(self.js.delete_stream(&self.name));
    }
}

/// Fetches until `n` messages came (or 10 s passed).
fn fetch_n(nats: &Nats, n: usize) -> Vec<Message> {
    let start = Instant::now();
    let mut got = Vec::new();
    while got.len() < n && start.elapsed() < Duration::from_secs(10) {
        got.extend(
            nats.fetch(n - got.len(), Duration::from_millis(500))
                .unwrap(),
        );
    }
    assert_eq!(got.len(), n);
    got
}

fn ids(messages: &[Message]) -> Vec<i64> {
    messages.iter().map(|m| m.id).collect()
}

const ZERO: Backlog = Backlog {
    waiting: 0,
    held: 0,
};

#[test]
fn fetches_and_acks_thousands() {
    let Some(fx) = Fixture::new() else { return };
    fx.publish(3000);
    let nats = fx.open(Duration::from_secs(30));
    assert_eq!(nats.backlog().unwrap().waiting, 3000);
    let got = fetch_n(&nats, 3000);
    let mut seen = ids(&got);
    seen.sort_unstable();
    assert_eq!(seen, (1..=3000).collect::<Vec<i64>>());
    let first = got.iter().find(|m| m.id == 1).unwrap();
    assert_eq!(
        first.subject.as_deref(),
        Some(format!("{}.x", fx.name).as_str())
    );
    assert_eq!(first.payload, b"m0");
    assert_eq!(first.deliveries, 1);
    let age = chrono::Utc::now() - first.published.unwrap();
    assert!(age.num_seconds().abs() < 60, "{age}");
    assert_eq!(
        nats.backlog().unwrap(),
        Backlog {
            waiting: 0,
            held: 3000
        }
    );

    let start = Instant::now();
    nats.ack(&seen).unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    // Only the last of the 3,000 acks asked for a reply: the server
    // applied them in order, so all are counted at once.
    assert_eq!(nats.backlog().unwrap(), ZERO);
    // Settled already, or never fetched: nothing to do.
    nats.ack(&[1, 2, 99_999]).unwrap();
    nats.term(&[3]).unwrap();
    assert_eq!(nats.backlog().unwrap(), ZERO);
    assert!(nats.fetch(0, Duration::from_secs(5)).unwrap().is_empty());
}

#[test]
fn unacked_message_comes_back_after_the_lease() {
    let Some(fx) = Fixture::new() else { return };
    fx.publish(1);
    let nats = fx.open(Duration::from_secs(1));
    assert_eq!(fetch_n(&nats, 1)[0].deliveries, 1);
    assert_eq!(
        nats.backlog().unwrap(),
        Backlog {
            waiting: 0,
            held: 1
        }
    );
    let again = fetch_n(&nats, 1);
    // At least 2: on a loaded machine a redelivery can go to a pull the
    // client gave up on a moment before the server did; that delivery
    // counts too, and the message comes once more.
    assert_eq!(again[0].id, 1);
    assert!(again[0].deliveries >= 2, "{again:?}");
    nats.ack(&[1]).unwrap();
    assert_eq!(nats.backlog().unwrap(), ZERO);
}

#[test]
fn released_message_comes_back_at_once() {
    let Some(fx) = Fixture::new() else { return };
    fx.publish(2);
    let nats = fx.open(Duration::from_secs(60));
    let got = fetch_n(&nats, 2);
    nats.release(&ids(&got)).unwrap();
    let start = Instant::now();
    let again = fetch_n(&nats, 2);
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(again.iter().all(|m| m.deliveries == 2), "{again:?}");
}

#[test]
fn terminated_message_never_comes_back() {
    let Some(fx) = Fixture::new() else { return };
    fx.publish(2);
    let nats = fx.open(Duration::from_secs(1));
    fetch_n(&nats, 2);
    nats.term(&[1]).unwrap();
    nats.ack(&[2]).unwrap();
    assert_eq!(nats.backlog().unwrap(), ZERO);
    // Past the lease: a message still held would be delivered again.
    assert!(nats.fetch(10, Duration::from_secs(2)).unwrap().is_empty());
    assert_eq!(nats.backlog().unwrap(), ZERO);
}

#[test]
fn extended_lease_holds_the_message() {
    let Some(fx) = Fixture::new() else { return };
    fx.publish(1);
    let lease = Duration::from_millis(1500);
    let nats = fx.open(lease);
    fetch_n(&nats, 1);
    let start = Instant::now();
    while start.elapsed() < lease * 2 + Duration::from_millis(500) {
        nats.extend(&[1]).unwrap();
        let early = nats.fetch(10, Duration::from_millis(300)).unwrap();
        assert!(early.is_empty(), "redelivered while extended: {early:?}");
    }
    // Not extended any more: back it comes.
    let again = fetch_n(&nats, 1);
    assert_eq!(again[0].deliveries, 2);
}

#[test]
fn partial_batch_returns_without_sitting_out_the_wait() {
    let Some(fx) = Fixture::new() else { return };
    let nats = fx.open(Duration::from_secs(30));
    let start = Instant::now();
    assert!(nats.fetch(10, Duration::from_secs(1)).unwrap().is_empty());
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(900), "{waited:?}");
    assert!(waited < Duration::from_secs(8), "{waited:?}");

    fx.publish(3);
    let start = Instant::now();
    assert_eq!(nats.fetch(100, Duration::from_secs(5)).unwrap().len(), 3);
    assert!(
        start.elapsed() < Duration::from_millis(2500),
        "{:?}",
        start.elapsed()
    );

    // Published during the wait: returned when it comes.
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(300));
            fx.publish(2);
        });
        let start = Instant::now();
        let mut got = nats.fetch(100, Duration::from_secs(5)).unwrap();
        assert!(
            start.elapsed() < Duration::from_millis(2500),
            "{:?}",
            start.elapsed()
        );
        assert!(!got.is_empty());
        if got.len() < 2 {
            got.extend(fetch_n(&nats, 1));
        }
        assert_eq!(ids(&got), [4, 5]);
    });
}

#[test]
fn missing_stream_is_named() {
    let Some(fx) = Fixture::new() else { return };
    let missing = format!("{}_missing", fx.name);
    let err = Nats::open(&server_url(), &missing, "c", Duration::from_secs(5))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains(&format!("no stream \"{missing}\"")), "{err}");
}

#[test]
fn unreachable_server_fails_fast_without_the_password() {
    let start = Instant::now();
    let url = "nats://bob:s3cret@127.0.0.1:4999";
    let err = Nats::open(url, "S", "c", Duration::from_secs(5))
        .err()
        .unwrap()
        .to_string();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert!(
        err.starts_with("cannot connect to NATS at nats://bob:***@127.0.0.1:4999: "),
        "{err}"
    );
    assert!(!err.contains("s3cret") && !err.contains('\n'), "{err}");
}

#[test]
fn incompatible_consumers_are_refused() {
    let Some(fx) = Fixture::new() else { return };
    let cases = [
        (
            consumer::Config {
                deliver_subject: Some("somewhere".into()),
                ..Default::default()
            },
            "is a push consumer",
        ),
        (
            consumer::Config {
                filter_subject: format!("{}.a", fx.name),
                ..Default::default()
            },
            "filters the stream on",
        ),
        (
            consumer::Config {
                ack_policy: AckPolicy::All,
                ..Default::default()
            },
            "not explicitly",
        ),
    ];
    for (config, needle) in cases {
        fx.add_consumer(consumer::Config {
            durable_name: Some("c".into()),
            ..config
        });
        let err = Nats::open(&server_url(), &fx.name, "c", Duration::from_secs(5))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains(needle) && err.contains("\"c\""), "{err}");
        fx.rt.block_on(async {
            let stream = fx.js.get_stream(&fx.name).await.unwrap();
            stream.delete_consumer("c").await.unwrap();
        });
    }
}

#[test]
fn consumer_is_created_then_its_ack_wait_updated() {
    let Some(fx) = Fixture::new() else { return };
    fx.publish(2);
    let nats = fx.open(Duration::from_secs(30));
    let config = fx.consumer_info().config;
    assert_eq!(config.durable_name.as_deref(), Some("c"));
    assert!(config.deliver_subject.is_none());
    assert_eq!(config.ack_policy, AckPolicy::Explicit);
    assert_eq!(config.deliver_policy, DeliverPolicy::All);
    assert_eq!(config.max_deliver, -1);
    assert_eq!(config.max_ack_pending, -1);
    assert_eq!(config.ack_wait, Duration::from_secs(30));
    nats.ack(&ids(&fetch_n(&nats, 1))).unwrap();
    drop(nats);

    let nats = fx.open(Duration::from_secs(7));
    assert_eq!(fx.consumer_info().config.ack_wait, Duration::from_secs(7));
    drop(fx.open(Duration::from_secs(7)));
    assert_eq!(fx.consumer_info().config, {
        let mut config = config;
        config.ack_wait = Duration::from_secs(7);
        config
    });
    // The same consumer: what was acked stays acked.
    assert_eq!(ids(&fetch_n(&nats, 1)), [2]);
}

#[test]
fn max_ack_pending_of_an_existing_consumer_does_not_stall_a_fetch() {
    let Some(fx) = Fixture::new() else { return };
    fx.publish(10);
    fx.add_consumer(consumer::Config {
        durable_name: Some("c".into()),
        max_ack_pending: 3,
        ..Default::default()
    });
    let nats = fx.open(Duration::from_secs(30));
    let start = Instant::now();
    let got = nats.fetch(10, Duration::from_secs(5)).unwrap();
    assert!(
        start.elapsed() < Duration::from_millis(2500),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(ids(&got), [1, 2, 3]);
    assert!(nats
        .fetch(10, Duration::from_millis(300))
        .unwrap()
        .is_empty());
    nats.ack(&ids(&got)).unwrap();
    assert_eq!(ids(&fetch_n(&nats, 3)), [4, 5, 6]);
}

#[test]
fn acks_to_a_deleted_stream_fail() {
    let Some(fx) = Fixture::new() else { return };
    fx.publish(1);
    let nats = fx.open(Duration::from_secs(30));
    let got = fetch_n(&nats, 1);
    fx.rt.block_on(fx.js.delete_stream(&fx.name)).unwrap();
    let err = nats.ack(&ids(&got)).unwrap_err().to_string();
    assert!(err.contains("consumer deleted"), "{err}");
    let err = nats.backlog().unwrap_err().to_string();
    assert!(err.contains("stream not found"), "{err}");
}

/// A TCP proxy to the server that can drop every connection and refuse
/// new ones for a while, as a server that goes away would.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
}

impl Proxy {
    fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let server = server_url().trim_start_matches("nats://").to_owned();
        let up_ = up.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(upstream) = TcpStream::connect(&server) else {
                    continue;
                };
                if !up_.load(Ordering::SeqCst) {
                    continue;
                }
                for (from, to) in [
                    (client.try_clone().unwrap(), upstream.try_clone().unwrap()),
                    (upstream, client),
                ] {
                    let up = up_.clone();
                    std::thread::spawn(move || pipe(from, to, &up));
                }
            }
        });
        Proxy { port, up }
    }
}

/// Copies `from` to `to` until either ends or the proxy goes down.
fn pipe(mut from: TcpStream, mut to: TcpStream, up: &AtomicBool) {
    use std::io::{Read, Write};
    from.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut buf = [0; 16384];
    while up.load(Ordering::SeqCst) {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) if to.write_all(&buf[..n]).is_err() => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break,
        }
    }
    let _ = from.shutdown(std::net::Shutdown::Both);
    let _ = to.shutdown(std::net::Shutdown::Both);
}

#[test]
fn lost_connection_is_waited_out() {
    let Some(fx) = Fixture::new() else { return };
    fx.publish(2);
    let proxy = Proxy::start();
    let url = format!("nats://127.0.0.1:{}", proxy.port);
    let nats = Nats::open(&url, &fx.name, "c", Duration::from_secs(30)).unwrap();
    let first = fetch_n(&nats, 1);

    proxy.up.store(false, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    assert!(nats
        .fetch(10, Duration::from_millis(500))
        .unwrap()
        .is_empty());
    assert!(
        start.elapsed() < Duration::from_secs(12),
        "{:?}",
        start.elapsed()
    );
    let err = nats.backlog().unwrap_err().to_string();
    assert!(err.contains("reconnecting"), "{err}");

    proxy.up.store(true, Ordering::SeqCst);
    nats.ack(&ids(&first)).unwrap();
    let rest = fetch_n(&nats, 1);
    nats.ack(&ids(&rest)).unwrap();
    assert_eq!(nats.backlog().unwrap(), ZERO);
}

/// Slow (over 30 s): run with `--ignored`.
#[test]
#[ignore]
fn fetch_fails_once_the_server_stays_away() {
    let Some(fx) = Fixture::new() else { return };
    let proxy = Proxy::start();
    let url = format!("nats://127.0.0.1:{}", proxy.port);
    let nats = Nats::open(&url, &fx.name, "c", Duration::from_secs(30)).unwrap();
    proxy.up.store(false, Ordering::SeqCst);
    let start = Instant::now();
    let err = loop {
        match nats.fetch(10, Duration::from_secs(1)) {
            Ok(got) => assert!(got.is_empty()),
            Err(e) => break e.to_string(),
        }
        assert!(start.elapsed() < Duration::from_secs(45));
    };
    assert!(err.contains("lost the connection to NATS"), "{err}");
    assert!(
        start.elapsed() >= Duration::from_secs(29),
        "{:?}",
        start.elapsed()
    );
}
