//! Redaction, in one place: [`redact`] hides every secret a URL can carry
//! before text leaves batchproc (stderr, an item's `error` column,
//! `batchproc_runs.command`, `batchproc runs`).
//!
//! It takes any text, a URL alone or a message with URLs in it, and
//! replaces with `***`:
//!
//! - **The password of a URL's user-info**, `scheme://user:PASSWORD@host`.
//!   As the WHATWG URL parser reads it (sqlx and ureq parse with it), the
//!   authority ends at `/`, `?` or `#` and user-info at the authority's
//!   *last* `@`, so an unencoded `@` is part of the password. The password
//!   is hidden as written, percent-encoded or not (`s3cr%40t`). User-info
//!   without a password (`postgres://bob@db`) is left alone. When what
//!   follows the `:` cannot be a port, a later `@` ends user-info even
//!   past a space (the URL parser encodes it: `postgres://u:pa ss@h/d`
//!   connects with `pa ss`) or past an unencoded `/`, `?` or `#` (the URL
//!   is then invalid, and its password runs to the line's last `@`): when
//!   in doubt, more is hidden.
//! - **The value of a secret-bearing parameter**, `NAME=VALUE` at the start
//!   of the text or after `?`, `&`, `;` or whitespace: a URL's query, or a
//!   libpq conninfo string (spaces around `=` and a `'quoted value'`
//!   allowed). NAME counts once percent-decoded and lowercased
//!   (`p%61ssword`, `PASSWORD`): see [`secret_name`]. The value ends at
//!   `&`, `#` or whitespace. `passfile`, `sslkey` and the like are paths,
//!   not secrets, and stay.
//!
//! What a driver says never holds the password decoded (checked for sqlx
//! in tests/secrets.rs), so the forms above are all there is to hide.
//! Redacting twice changes nothing, also once the redacted text is quoted
//! or followed by more (a value of `***` is taken as hidden already), so a
//! caller need not know whether a text was redacted before.

use percent_encoding::percent_decode_str;

/// What a secret is replaced with.
const HIDDEN: &str = "***";

/// `text` with every URL password and secret parameter value replaced by
/// `***` (see the module documentation for the forms).
pub fn redact(text: &str) -> String {
    redact_parameters(&redact_user_info(text))
}

/// `scheme://user:PASSWORD@…` -> `scheme://user:***@…`, for every `://`.
fn redact_user_info(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        rest = tail;
        if let Some((start, end)) = password_span(tail) {
            out.push_str(&tail[..start]);
            out.push_str(HIDDEN);
            rest = &tail[end..];
        }
    }
    out.push_str(rest);
    out
}

/// Where the password lies in `authority` (the text after `://`): from
/// after user-info's first `:` to the `@` that ends user-info. None when
/// there is no user-info, or no password in it.
fn password_span(authority: &str) -> Option<(usize, usize)> {
    let line = &authority[..authority.find(['\n', '\r']).unwrap_or(authority.len())];
    // The authority as a URL parser reads it, and cut at a space, as a URL
    // in a message is.
    let end = line.find(['/', '?', '#']).unwrap_or(line.len());
    let word = line.find(char::is_whitespace).unwrap_or(line.len());
    let first = &line[..end.min(word)];
    // `host`, `host:5432`, `[::1]:80`, `user@host:5432` (and `host:5432:`
    // in a message): no password there or beyond.
    let plain = first.trim_end_matches([':', ',', '.', ';', ')', '"', '\'']);
    let no_password = plain.starts_with('[')
        || plain
            .split_once(':')
            .is_none_or(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()));
    let at = if no_password || (word >= end && first.contains('@')) {
        first.rfind('@')?
    } else if word < end {
        // A space in the password.
        line[..end].rfind('@')?
    } else {
        // A `/`, `?` or `#` in the password cut the authority short.
        line.rfind('@')?
    };
    let colon = line[..at].find(':')?;
    (colon + 1 < at).then_some((colon + 1, at))
}

/// `NAME=VALUE` -> `NAME=***` where NAME is secret-bearing.
fn redact_parameters(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    // `text[..copied]` is in `out`.
    let mut copied = 0;
    let mut at_start = true;
    for (i, c) in text.char_indices() {
        if i < copied {
            continue;
        }
        if at_start {
            if let Some((start, end)) = secret_value(&text[i..]) {
                out.push_str(&text[copied..i + start]);
                out.push_str(HIDDEN);
                copied = i + end;
            }
        }
        at_start = matches!(c, '?' | '&' | ';') || c.is_whitespace();
    }
    out.push_str(&text[copied..]);
    out
}

/// If `text` starts with `NAME=VALUE` and NAME is secret-bearing, where
/// VALUE lies in it (a non-empty value only).
fn secret_value(text: &str) -> Option<(usize, usize)> {
    let name_end =
        text.find(|c: char| matches!(c, '=' | '&' | '?' | ';' | '#') || c.is_whitespace())?;
    let name = &text[..name_end];
    let name_like = |c: char| c.is_ascii_alphanumeric() || "_-.%".contains(c);
    if name.is_empty() || !name.chars().all(name_like) || !secret_name(name) {
        return None;
    }
    let blanks = |s: &str| s.len() - s.trim_start_matches([' ', '\t']).len();
    let equals = name_end + blanks(&text[name_end..]);
    if !text[equals..].starts_with('=') {
        return None;
    }
    let start = equals + 1 + blanks(&text[equals + 1..]);
    let value = &text[start..];
    let len = if value.starts_with(HIDDEN) {
        // Hidden already, and what follows is the message's: text redacted
        // once may be quoted (`"…?token=***"`) and redacted again.
        HIDDEN.len()
    } else if value.starts_with('\'') {
        quoted_len(value)
    } else {
        value
            .find(|c: char| matches!(c, '&' | '#') || c.is_whitespace())
            .unwrap_or(value.len())
    };
    (len > 0).then_some((start, start + len))
}

/// The length of a libpq conninfo `'quoted value'` (`\` escapes the next
/// character), quotes included; the rest of the text when unterminated.
fn quoted_len(value: &str) -> usize {
    let mut escaped = false;
    for (i, c) in value.char_indices().skip(1) {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '\'' => return i + 1,
            _ => {}
        }
    }
    value.len()
}

/// Whether a parameter of this name carries a secret, once percent-decoded
/// and lowercased: the passwords libpq takes (`password`, `sslpassword`),
/// and what HTTP APIs put in a query string (`token`, `access_token`,
/// `api_key`, `client_secret`, `signature`, `X-Amz-Signature`, …).
pub(crate) fn secret_name(name: &str) -> bool {
    const NAMES: &[&str] = &[
        "pwd",
        "auth",
        "sig",
        "key_secret",
        "access_key",
        "secret_key",
        "private_key",
    ];
    const ENDINGS: &[&str] = &[
        "password",
        "passwd",
        "token",
        "secret",
        "signature",
        "apikey",
        "api_key",
        "api-key",
    ];
    let name = percent_decode_str(name)
        .decode_utf8_lossy()
        .to_ascii_lowercase();
    NAMES.contains(&name.as_str()) || ENDINGS.iter().any(|e| name.ends_with(e))
}

#[cfg(test)]
mod tests {
    use super::redact;

    /// Each case: the text, and what it must become.
    fn check(cases: &[(&str, &str)]) {
        for (text, expected) in cases {
            assert_eq!(redact(text), *expected, "redacting {text:?}");
            assert_eq!(redact(expected), *expected, "redacting twice {text:?}");
            let quoted = format!("\"{expected}\": cause");
            assert_eq!(redact(&quoted), quoted, "redacting {quoted:?}");
        }
    }

    #[test]
    fn user_info_passwords() {
        check(&[
            (
                "x --sink postgres://bob:s3cret@db:5432/w?sslmode=require y",
                "x --sink postgres://bob:***@db:5432/w?sslmode=require y",
            ),
            ("postgresql://u:pw@h/d", "postgresql://u:***@h/d"),
            ("postgres://u:pw@h", "postgres://u:***@h"),
            ("http://u:pw@h:8080?q=1", "http://u:***@h:8080?q=1"),
            (
                "postgres://u:pw@[::1]:5432/d",
                "postgres://u:***@[::1]:5432/d",
            ),
            // Two URLs in one message.
            (
                "a postgres://u:one@h/d b http://v:two@g/ c",
                "a postgres://u:***@h/d b http://v:***@g/ c",
            ),
            // Quoted in a message.
            (
                "sink \"postgres://u:pw@h/d\"",
                "sink \"postgres://u:***@h/d\"",
            ),
        ]);
    }

    #[test]
    fn an_at_sign_in_the_password() {
        check(&[
            ("postgres://bob:p@ss@db/w", "postgres://bob:***@db/w"),
            (
                "postgres://bob:p@s@s@db:1?x=1",
                "postgres://bob:***@db:1?x=1",
            ),
            // A `:` in the password too.
            ("postgres://bob:a:b@c@db/w", "postgres://bob:***@db/w"),
        ]);
    }

    #[test]
    fn percent_encoded_passwords() {
        check(&[
            ("postgres://bob:s3cr%40t@db/w", "postgres://bob:***@db/w"),
            (
                "postgres://postgres:p%40ss%20w%2Frd@127.0.0.1:5432/test",
                "postgres://postgres:***@127.0.0.1:5432/test",
            ),
        ]);
    }

    #[test]
    fn unencoded_delimiters_in_the_password() {
        check(&[
            // A space: the URL parser encodes it, so sqlx connects with it.
            ("postgres://u:pa ss@h/d", "postgres://u:***@h/d"),
            (
                "'postgres://u:pa ss@h/d' next",
                "'postgres://u:***@h/d' next",
            ),
            ("postgres://u:p@ss w@h/d", "postgres://u:***@h/d"),
            (
                "postgres://u:pw@h:5432 next",
                "postgres://u:***@h:5432 next",
            ),
            // `/`, `?`, `#`: the URL is invalid, and the password is hidden
            // up to the last `@`.
            ("postgres://u:pa/ss@h/d", "postgres://u:***@h/d"),
            ("postgres://u:pa?ss@h/d", "postgres://u:***@h/d"),
            ("postgres://u:pa#ss@h/d", "postgres://u:***@h/d"),
        ]);
    }

    #[test]
    fn password_parameters() {
        check(&[
            (
                "postgres://bob@db/w?sslmode=require&password=s3cret&x=1 next",
                "postgres://bob@db/w?sslmode=require&password=***&x=1 next",
            ),
            ("postgres://db/w?PASSWORD=x", "postgres://db/w?PASSWORD=***"),
            (
                "postgres://db/w?p%61ssword=x&y=2",
                "postgres://db/w?p%61ssword=***&y=2",
            ),
            (
                "postgres://db/w?Pass%77ord=x",
                "postgres://db/w?Pass%77ord=***",
            ),
            (
                "postgres://db/w?sslpassword=x#f",
                "postgres://db/w?sslpassword=***#f",
            ),
            // Encoded values, and values holding `@`, `=` or `:`.
            (
                "postgres://db/w?password=a%26b%40c",
                "postgres://db/w?password=***",
            ),
            (
                "postgres://db/w?password=a@b=c:d&e=1",
                "postgres://db/w?password=***&e=1",
            ),
            // Both forms in one URL.
            (
                "postgres://u:a@h/d?password=b",
                "postgres://u:***@h/d?password=***",
            ),
            // libpq conninfo strings.
            ("host=h password=x dbname=d", "host=h password=*** dbname=d"),
            (
                "host=h password = 'a b\\'c' dbname=d",
                "host=h password = *** dbname=d",
            ),
            ("password=x", "password=***"),
            ("a;password=x;b", "a;password=***"),
            // A name ending in one that counts.
            (
                "mypassword=x the_password_is",
                "mypassword=*** the_password_is",
            ),
            // An empty value has nothing to hide.
            (
                "postgres://db/w?password=&x=1",
                "postgres://db/w?password=&x=1",
            ),
        ]);
    }

    #[test]
    fn http_secrets() {
        check(&[
            (
                "GET http://h/items/1?token=abc&n=2",
                "GET http://h/items/1?token=***&n=2",
            ),
            ("http://h/?api_key=k", "http://h/?api_key=***"),
            (
                "http://h/?apikey=k&API-KEY=l",
                "http://h/?apikey=***&API-KEY=***",
            ),
            ("https://h/?access_token=t", "https://h/?access_token=***"),
            (
                "https://h/?client_secret=s&secret=t",
                "https://h/?client_secret=***&secret=***",
            ),
            (
                "https://h/?sig=s&signature=t",
                "https://h/?sig=***&signature=***",
            ),
            ("https://h/?auth=a", "https://h/?auth=***"),
            (
                "https://b.s3.amazonaws.com/k?X-Amz-Security-Token=t&X-Amz-Signature=s",
                "https://b.s3.amazonaws.com/k?X-Amz-Security-Token=***&X-Amz-Signature=***",
            ),
        ]);
    }

    #[test]
    fn no_false_positives() {
        check(&[
            (
                "postgres://db/w?passfile=/home/u/.pgpass&sslkey=/k.pem&sslmode=require",
                "postgres://db/w?passfile=/home/u/.pgpass&sslkey=/k.pem&sslmode=require",
            ),
            ("postgres://bob@db/w", "postgres://bob@db/w"),
            ("postgres://bob@db:5432 next", "postgres://bob@db:5432 next"),
            ("postgres://bob@[::1]:5432/w", "postgres://bob@[::1]:5432/w"),
            ("postgres://db:5432/w", "postgres://db:5432/w"),
            ("http://[::1]:8080/x", "http://[::1]:8080/x"),
            ("http://h/items?e=a@b.c", "http://h/items?e=a@b.c"),
            (
                "http://h:8080/items?e=a@b.c&n=1",
                "http://h:8080/items?e=a@b.c&n=1",
            ),
            (
                "cannot connect to http://h:1: connection refused (ask ops@example.com)",
                "cannot connect to http://h:1: connection refused (ask ops@example.com)",
            ),
            ("sqlite:out.db", "sqlite:out.db"),
            (
                "no password here, mail bob@example.com",
                "no password here, mail bob@example.com",
            ),
            ("d/password=x.txt", "d/password=x.txt"),
            ("--key=id --sql=SELECT 1", "--key=id --sql=SELECT 1"),
            ("", ""),
            ("password", "password"),
            ("://", "://"),
            ("x://:@", "x://:@"),
        ]);
    }
}
