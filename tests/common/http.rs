//! A small HTTP server for the `http:` processor's tests, on 127.0.0.1
//! (tiny_http). It records what it received, so tests check requests
//! against expectations written out by hand.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the server saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub url: String,
    pub content_type: Option<String>,
    pub body: String,
    /// When the server had read the request.
    pub at: Instant,
}

/// A server answering by path prefix: `/ok/…` 200 with `hello <url>`,
/// `/big/…` 200 with 80,000 bytes of `é`, `/missing/…` 404, `/busy/…` 503 with `Retry-After: 7`,
/// `/after-stall/…` 404 once a `/stall/…` request has arrived,
/// `/flaky/…` 503 to the first request for a URL and 200 after,
/// `/limited/…` 429 with `Retry-After: 2` to the first request for a URL and
/// 200 after, `/down/…` always 503 (no `Retry-After`), `/slow/…` 200 after
/// 50 ms, `/stall/…` only after 20 s. It counts the requests it is answering
/// at once (`max_in_flight`). Stops when dropped.
pub struct Server {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start() -> Server {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let port = server.server_addr().to_ip().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let max_in_flight = Arc::new(AtomicUsize::new(0));
        let thread = {
            let (server, seen) = (server.clone(), seen.clone());
            let (in_flight, max_in_flight) = (in_flight.clone(), max_in_flight.clone());
            std::thread::spawn(move || {
                for mut request in server.incoming_requests() {
                    let seen = seen.clone();
                    let (in_flight, max_in_flight) = (in_flight.clone(), max_in_flight.clone());
                    // One thread per request, so a stalled one blocks no other.
                    std::thread::spawn(move || {
                        // Counted from here (the request has arrived) until
                        // just before the response goes out: a client that
                        // got its answer may send its next request at once,
                        // and must not be counted twice.
                        let now = in_flight.fetch_add(1, SeqCst) + 1;
                        max_in_flight.fetch_max(now, SeqCst);
                        let mut body = String::new();
                        request.as_reader().read_to_string(&mut body).unwrap();
                        let url = request.url().to_owned();
                        // How many requests for this URL, this one included.
                        let nth = {
                            let mut seen = seen.lock().unwrap();
                            seen.push(Seen {
                                method: request.method().to_string(),
                                url: url.clone(),
                                content_type: request
                                    .headers()
                                    .iter()
                                    .find(|h| h.field.equiv("content-type"))
                                    .map(|h| h.value.to_string()),
                                body,
                                at: Instant::now(),
                            });
                            seen.iter().filter(|s| s.url == url).count()
                        };
                        let response = if url.starts_with("/ok/") {
                            tiny_http::Response::from_string(format!("hello {url}\n"))
                        } else if url.starts_with("/after-stall/") {
                            // 404 once a stalled request is in: a failure
                            // that comes while another request hangs.
                            let stalled = || {
                                let seen = seen.lock().unwrap();
                                seen.iter().any(|s| s.url.starts_with("/stall/"))
                            };
                            while !stalled() {
                                std::thread::sleep(Duration::from_millis(10));
                            }
                            tiny_http::Response::from_string("no such thing").with_status_code(404)
                        } else if url.starts_with("/missing/") {
                            tiny_http::Response::from_string("no such thing").with_status_code(404)
                        } else if url.starts_with("/big/") {
                            tiny_http::Response::from_string("é".repeat(40_000))
                        } else if url.starts_with("/busy/") {
                            tiny_http::Response::from_string("later")
                                .with_status_code(503)
                                .with_header(
                                    tiny_http::Header::from_bytes("Retry-After", "7").unwrap(),
                                )
                        } else if url.starts_with("/flaky/") && nth == 1 {
                            tiny_http::Response::from_string("not yet").with_status_code(503)
                        } else if url.starts_with("/limited/") && nth == 1 {
                            tiny_http::Response::from_string("slow down")
                                .with_status_code(429)
                                .with_header(
                                    tiny_http::Header::from_bytes("Retry-After", "2").unwrap(),
                                )
                        } else if url.starts_with("/flaky/") || url.starts_with("/limited/") {
                            tiny_http::Response::from_string(format!("try {nth}"))
                        } else if url.starts_with("/down/") {
                            tiny_http::Response::from_string("down").with_status_code(503)
                        } else if url.starts_with("/slow/") {
                            std::thread::sleep(Duration::from_millis(50));
                            tiny_http::Response::from_string("done")
                        } else {
                            std::thread::sleep(Duration::from_secs(20));
                            tiny_http::Response::from_string("too late")
                        };
                        in_flight.fetch_sub(1, SeqCst);
                        let _ = request.respond(response);
                    });
                }
            })
        };
        Server {
            port,
            seen,
            in_flight,
            max_in_flight,
            server,
            thread: Some(thread),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// How many requests each URL got.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for s in self.seen() {
            *counts.entry(s.url).or_default() += 1;
        }
        counts
    }

    /// When the requests for `url` arrived, in order.
    pub fn arrivals(&self, url: &str) -> Vec<Instant> {
        let mut at: Vec<Instant> = self
            .seen()
            .iter()
            .filter(|s| s.url == url)
            .map(|s| s.at)
            .collect();
        at.sort();
        at
    }

    /// The most requests the server was answering at once.
    pub fn max_in_flight(&self) -> usize {
        assert_eq!(self.in_flight.load(SeqCst), 0, "a request is still open");
        self.max_in_flight.load(SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
