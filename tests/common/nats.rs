//! A fresh JetStream stream per test, on the local NATS server the machines
//! run (BATCHPROC_TEST_NATS, default nats://127.0.0.1:4222). Unreachable:
//! under CI=true the test fails; elsewhere it says loudly that it was
//! skipped.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};

/// A stream `name` taking the subjects `name.>`, deleted when the value is
/// dropped.
pub struct NatsStream {
    pub url: String,
    pub name: String,
    js: jetstream::Context,
    // Last: the client's connection runs on it until the end.
    rt: tokio::runtime::Runtime,
}

fn server_url() -> String {
    std::env::var("BATCHPROC_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// A new, empty stream; None (said loudly) when there is no server.
pub fn fresh_stream() -> Option<NatsStream> {
    static N: AtomicU32 = AtomicU32::new(0);
    let url = server_url();
    let name = format!(
        "bp_test_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    // A worker thread keeps the connection served between calls.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let created = rt.block_on(async {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(2))
            .connect(url.as_str())
            .await?;
        let js = jetstream::new(client);
        let _ = js.delete_stream(&name).await;
        js.create_stream(stream::Config {
            name: name.clone(),
            subjects: vec![format!("{name}.>")],
            ..Default::default()
        })
        .await?;
        Ok::<_, async_nats::Error>(js)
    });
    match created {
        Ok(js) => Some(NatsStream { url, name, js, rt }),
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("NATS at {url} is unreachable under CI: {e}")
        }
        Err(e) => {
            eprintln!("\n*** SKIPPED: NATS at {url} is unreachable ({e}) ***\n");
            None
        }
    }
}

impl NatsStream {
    /// Publishes `payloads` in order on `NAME.m`: on a fresh stream, the
    /// first has sequence 1. Returns once the server stored them all.
    pub fn publish<P: AsRef<[u8]>>(&self, payloads: &[P]) {
        self.publish_on("m", payloads)
    }

    /// Publishes `payloads` in order on `NAME.SUFFIX`, all sent before any
    /// acknowledgement is awaited (a few hundred at a time).
    pub fn publish_on<P: AsRef<[u8]>>(&self, suffix: &str, payloads: &[P]) {
        let subject = format!("{}.{suffix}", self.name);
        self.rt.block_on(async {
            for chunk in payloads.chunks(500) {
                let mut pending = Vec::with_capacity(chunk.len());
                for payload in chunk {
                    let payload = payload.as_ref().to_vec().into();
                    pending.push(self.js.publish(subject.clone(), payload).await.unwrap());
                }
                for ack in pending {
                    ack.await.unwrap();
                }
            }
        })
    }

    /// The server's view of consumer `name`; None when there is none.
    pub fn consumer_info(&self, name: &str) -> Option<consumer::Info> {
        self.rt.block_on(async {
            let stream = self.js.get_stream(&self.name).await.unwrap();
            stream.consumer_info(name).await.ok()
        })
    }

    /// `(num_pending, num_ack_pending)` of consumer `name`: messages not
    /// delivered yet, and delivered but not acknowledged.
    pub fn consumer_counts(&self, name: &str) -> Option<(u64, u64)> {
        let info = self.consumer_info(name)?;
        Some((info.num_pending, info.num_ack_pending as u64))
    }

    /// Creates (or replaces the config of) a consumer, say an incompatible
    /// one that batchproc must refuse.
    pub fn create_consumer(&self, config: consumer::Config) {
        self.rt.block_on(async {
            let stream = self.js.get_stream(&self.name).await.unwrap();
            stream.create_consumer(config).await.unwrap();
        });
    }

    /// The server's URL with a user and `password` added (a server without
    /// auth lets them be), to check that the password never shows.
    pub fn url_with_password(&self, password: &str) -> String {
        self.url
            .replacen("nats://", &format!("nats://batchproc:{password}@"), 1)
    }

    /// How many messages the stream holds.
    pub fn messages(&self) -> u64 {
        self.rt.block_on(async {
            let stream = self.js.get_stream(&self.name).await.unwrap();
            stream.get_info().await.unwrap().state.messages
        })
    }
}

impl Drop for NatsStream {
    fn drop(&mut self) {
        let _ = self.rt.block_on(self.js.delete_stream(&self.name));
    }
}
