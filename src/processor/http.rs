//! `http:METHOD URL`: one HTTP request per item (GET or POST), with ureq —
//! a maintained blocking client, so requests run on the worker threads like
//! every other processor and need no async runtime. `https://` uses rustls
//! with the Mozilla root certificates (webpki-roots) built in.
//!
//! Placeholders in the URL (see `template`) are percent-encoded: every byte
//! but ASCII letters, digits and `-._~` is escaped, `/` included, so a value
//! fills one path segment or query value and can never change the URL's
//! shape (`{}` of `d/a b&c` gives `d%2Fa%20b%26c`).
//!
//! POST sends the item as a JSON object: for a file `{"path": …, "size": …}`
//! (a path that is not UTF-8 fails the item: JSON strings are Unicode), for a
//! row its query columns by name. Bytes become base64 strings (standard
//! alphabet, padded), times RFC 3339 text.
//!
//! Columns: `status` and `body` (the first 64 KiB, then a note that it was
//! truncated; text, or bytes if not UTF-8). A 2xx status succeeds; any other fails the item with `HTTP 404
//! Not Found` and keeps both columns. Timeouts, connection failures, 429 and
//! 5xx are marked retryable, with the response's `Retry-After` if any.

use std::io::Read;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Result};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
use ureq::http::{StatusCode, Uri};

use super::template::{Fields, Subject, Template};
use super::{Cx, ItemFailure, ItemProcessor, Kind, Pass, Processor, Reads, Retry};
use crate::record::{Column, ColumnType, Quoted, Value};
use crate::redact::redact;

/// Bytes of the response body kept in `body`.
const BODY_CAP: u64 = 64 * 1024;

/// RFC 3986 unreserved characters stay; everything else is escaped.
const FIELD: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

pub(super) static KIND: Kind = Kind {
    name: "http",
    reads: Reads::Item,
    argument: "GET|POST URL",
    help: "a request per item; POST sends the item as JSON",
    columns: || {
        vec![
            Column::new("status", ColumnType::Int),
            Column::new("body", ColumnType::Text),
        ]
    },
    parse: |request| Ok(Box::new(Http::parse(request)?)),
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Post,
}

pub(super) struct Http {
    spec: String,
    method: Method,
    url: Template,
    /// Shared by every worker: it keeps connections alive between items.
    agent: ureq::Agent,
}

impl Http {
    pub(super) fn parse(request: &str) -> Result<Http> {
        let Some((method, url)) = request.trim().split_once(char::is_whitespace) else {
            bail!("expected http:METHOD URL, e.g. http:GET http://localhost:8080/items/{{}}");
        };
        let method = match method.to_ascii_uppercase().as_str() {
            "GET" => Method::Get,
            "POST" => Method::Post,
            other => bail!("unsupported method {}: use GET or POST", Quoted(other)),
        };
        let url = Template::parse(url.trim());
        let sample = url.sample();
        let uri: Uri = sample.parse().map_err(|e: ureq::http::uri::InvalidUri| {
            anyhow::anyhow!(
                "bad URL {}: {}",
                Quoted(&redact(&sample)),
                redact(&e.to_string())
            )
        })?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            bail!("the URL must start with http:// or https://");
        }
        if uri.host().is_none_or(str::is_empty) {
            bail!("the URL has no host");
        }
        let agent = ureq::Agent::config_builder()
            // Every status is a response to record, not an error.
            .http_status_as_error(false)
            .user_agent(concat!("batchproc/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        Ok(Http {
            spec: format!("http:{request}"),
            method,
            url,
            agent,
        })
    }
}

impl Processor for Http {
    fn kind(&self) -> &'static Kind {
        &KIND
    }

    fn begin(&self) -> Pass<'_> {
        Pass::Item(self)
    }

    fn spec(&self) -> String {
        self.spec.clone()
    }

    fn bind(&mut self, fields: &Fields) -> Result<()> {
        self.url.bind(fields)
    }
}

fn encode(bytes: &[u8], out: &mut Vec<u8>) {
    for part in percent_encoding::percent_encode(bytes, FIELD) {
        out.extend_from_slice(part.as_bytes());
    }
}

impl ItemProcessor for Http {
    fn run(&self, subject: &Subject, cx: &Cx) -> Result<Vec<Value>, ItemFailure> {
        // Literal parts were checked as a URL before the run and fields are
        // percent-encoded, so this is ASCII.
        let url = String::from_utf8_lossy(&self.url.render(subject, Some(encode))).into_owned();
        let timeout = cx.deadline.map(|d| d.remaining());
        if timeout == Some(Duration::ZERO) {
            return Err(timed_out(cx));
        }
        let request = Request {
            agent: self.agent.clone(),
            method: self.method,
            url: url.clone(),
            body: match self.method {
                Method::Get => None,
                Method::Post => Some(json_body(subject)?),
            },
            timeout,
        };
        let answer = match cx.unless_cancelled(move || request.send()) {
            Ok(Some(answer)) => answer,
            Ok(None) => return Err(ItemFailure::new("cancelled")),
            Err(e) => return Err(ItemFailure::new(format!("cannot start a thread: {e}"))),
        };
        let Answer {
            status,
            retry_after,
            mut body,
        } = match answer {
            Ok(answer) => answer,
            Err(Failed::Request(e)) => return Err(self.failure(&url, e, cx)),
            Err(Failed::Body(e)) => {
                if cx.deadline.is_some_and(|d| d.passed()) {
                    return Err(timed_out(cx));
                }
                return Err(ItemFailure {
                    message: format!(
                        "{} {}: reading the body: {}",
                        self.verb(),
                        redact(&url),
                        redact(&e.to_string())
                    ),
                    values: None,
                    retry: Some(Retry::default()),
                });
            }
        };
        if body.len() as u64 > BODY_CAP {
            body.truncate(BODY_CAP as usize);
            // Cut at a character boundary, as exec's output is.
            if let Err(e) = std::str::from_utf8(&body) {
                if e.error_len().is_none() {
                    body.truncate(e.valid_up_to());
                }
            }
            body.extend_from_slice(
                format!("\n[batchproc: body truncated to its first {BODY_CAP} bytes]").as_bytes(),
            );
        }
        let body = match String::from_utf8(body) {
            Ok(s) => Value::Text(s),
            Err(e) => Value::Bytes(e.into_bytes()),
        };
        let values = vec![Value::Int(status.as_u16() as i64), body];
        if status.is_success() {
            return Ok(values);
        }
        let retryable = status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
        Err(ItemFailure {
            message: format!(
                "HTTP {} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            )
            .trim_end()
            .to_owned(),
            values: Some(values),
            retry: retryable.then_some(Retry { after: retry_after }),
        })
    }
}

/// One request, owned, so it can be sent from a thread of its own.
struct Request {
    agent: ureq::Agent,
    method: Method,
    url: String,
    body: Option<Vec<u8>>,
    timeout: Option<Duration>,
}

/// A response, its body read (up to one byte more than is kept).
struct Answer {
    status: StatusCode,
    retry_after: Option<Duration>,
    body: Vec<u8>,
}

enum Failed {
    Request(ureq::Error),
    Body(std::io::Error),
}

impl Request {
    fn send(self) -> Result<Answer, Failed> {
        let response = match (self.method, self.body) {
            (Method::Post, Some(body)) => self
                .agent
                .post(&self.url)
                .config()
                .timeout_global(self.timeout)
                .build()
                .header("content-type", "application/json")
                .send(&body[..]),
            _ => self
                .agent
                .get(&self.url)
                .config()
                .timeout_global(self.timeout)
                .build()
                .call(),
        };
        let mut response = response.map_err(Failed::Request)?;
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(retry_after);
        let mut body = Vec::new();
        // One byte more than is kept tells that there was more.
        response
            .body_mut()
            .with_config()
            .reader()
            .take(BODY_CAP + 1)
            .read_to_end(&mut body)
            .map_err(Failed::Body)?;
        Ok(Answer {
            status: response.status(),
            retry_after,
            body,
        })
    }
}

impl Http {
    fn verb(&self) -> &'static str {
        match self.method {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }

    /// A request that got no response.
    fn failure(&self, url: &str, e: ureq::Error, cx: &Cx) -> ItemFailure {
        use ureq::Error as E;
        if matches!(e, E::Timeout(_)) && cx.deadline.is_some() {
            return timed_out(cx);
        }
        let retryable = matches!(
            e,
            E::Timeout(_) | E::Io(_) | E::ConnectionFailed | E::HostNotFound
        );
        let cause = match e {
            E::Io(io) => super::io_message(&io),
            other => other.to_string(),
        };
        ItemFailure {
            // ureq's error may hold the URL (`bad uri: …`), or one it was
            // redirected to.
            message: format!("{} {}: {}", self.verb(), redact(url), redact(&cause)),
            values: None,
            retry: retryable.then(Retry::default),
        }
    }
}

fn timed_out(cx: &Cx) -> ItemFailure {
    ItemFailure {
        message: cx
            .deadline
            .map_or_else(|| "timed out".to_owned(), |d| d.message()),
        values: None,
        retry: Some(Retry::default()),
    }
}

/// `Retry-After` in either form: delay-seconds or an HTTP date.
fn retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// The item as a JSON object, for POST.
fn json_body(subject: &Subject) -> Result<Vec<u8>, ItemFailure> {
    let mut object = serde_json::Map::new();
    match subject {
        Subject::File { path, size } => {
            let Some(path) = path.to_str() else {
                return Err(ItemFailure::new(
                    "the path is not valid UTF-8, so it cannot be sent as JSON",
                ));
            };
            object.insert("path".into(), path.into());
            object.insert("size".into(), (*size).into());
        }
        Subject::Row { columns, values } => {
            for (column, value) in columns.iter().zip(values.iter()) {
                object.insert(column.name.clone(), json_value(value));
            }
        }
    }
    serde_json::to_vec(&object).map_err(|e| ItemFailure::new(format!("JSON: {e}")))
}

fn json_value(value: &Value) -> serde_json::Value {
    use base64::Engine;
    use serde_json::Value as J;
    match value {
        Value::Null => J::Null,
        Value::Int(i) => (*i).into(),
        // NaN and infinities have no JSON form: null.
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        Value::Text(s) => s.as_str().into(),
        Value::Bytes(b) => base64::engine::general_purpose::STANDARD.encode(b).into(),
        Value::Time(t) => Value::format_time(t).into(),
        Value::Bool(b) => (*b).into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_both_forms() {
        assert_eq!(retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("soon"), None);
    }

    #[test]
    fn methods_and_schemes_are_checked() {
        assert!(Http::parse("GET http://localhost/{}").is_ok());
        assert!(Http::parse("post http://localhost/").is_ok());
        assert!(Http::parse("PUT http://localhost/").is_err());
        assert!(Http::parse("GET https://localhost/").is_ok());
        assert!(Http::parse("GET ftp://localhost/").is_err());
        assert!(Http::parse("GET").is_err());
    }
}
