//! COPY for the Postgres sink: a batch encoded as the CSV that
//! `COPY … FROM STDIN (FORMAT csv)` reads, and sending it.

use std::fmt::Write as _;

use sqlx::PgConnection;

use crate::record::{Record, Value};

/// The batch as COPY's CSV: text always quoted (so an empty string is not
/// NULL), NULL as an unquoted empty field, bytes as `\x` hex.
pub(super) fn encode(batch: &[Record]) -> Vec<u8> {
    let mut out = String::with_capacity(batch.len() * 128);
    for record in batch {
        for (i, value) in record.values.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            match value {
                Value::Null => {}
                Value::Int(n) => {
                    let _ = write!(out, "{n}");
                }
                // `{:?}` of a float is its shortest round-trip text.
                Value::Float(f) => {
                    let _ = write!(out, "{f:?}");
                }
                Value::Text(s) => {
                    out.push('"');
                    if s.contains('"') {
                        out.push_str(&s.replace('"', "\"\""));
                    } else {
                        out.push_str(s);
                    }
                    out.push('"');
                }
                Value::Bytes(b) => {
                    out.push_str("\\x");
                    for byte in b {
                        let _ = write!(out, "{byte:02x}");
                    }
                }
                Value::Time(t) => out.push_str(&Value::format_time(t)),
                Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            }
        }
        out.push('\n');
    }
    out.into_bytes()
}

/// Runs `COPY … FROM STDIN` and sends `csv` through it.
pub(super) async fn send(
    conn: &mut PgConnection,
    sql: &str,
    csv: &[u8],
) -> Result<(), sqlx::Error> {
    let mut copy = conn.copy_in_raw(sql).await?;
    copy.send(csv).await?;
    copy.finish().await.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_encode_as_copy_csv() {
        let record = Record {
            values: vec![
                Value::Text("a \"b\", c".into()),
                Value::Text(String::new()),
                Value::Null,
                Value::Int(-3),
                Value::Float(0.1),
                Value::Bytes(vec![0, 255]),
                Value::Bool(true),
            ],
        };
        assert_eq!(
            String::from_utf8(encode(&[record])).unwrap(),
            "\"a \"\"b\"\", c\",\"\",,-3,0.1,\\x00ff,true\n"
        );
    }
}
