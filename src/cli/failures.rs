//! `batchproc failures`: the files whose row holds an error, most
//! consecutive failed runs first, as a table for people (one line each:
//! path, count, last error) or JSON for scripts. Rows arrive redacted.

use batchproc::FailureRow;

pub fn print_failures(rows: &[FailureRow], json: bool) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if json {
        let text = serde_json::to_string_pretty(rows).map_err(std::io::Error::other)?;
        return writeln!(out, "{text}");
    }
    write!(out, "{}", table(rows))
}

fn table(rows: &[FailureRow]) -> String {
    let mut lines = vec![["PATH".to_owned(), "FAILURES".to_owned(), "ERROR".to_owned()]];
    for r in rows {
        lines.push([
            r.path.clone(),
            r.failures.map_or("-".into(), |n| n.to_string()),
            // One line each, whatever the error held.
            r.error.replace(['\n', '\r'], " "),
        ]);
    }
    let width = |i: usize| {
        lines
            .iter()
            .map(|l| l[i].chars().count())
            .max()
            .unwrap_or(0)
    };
    let (w0, w1) = (width(0), width(1));
    let mut out = String::new();
    for [path, n, error] in lines {
        out.push_str(format!("{path:<w0$}  {n:<w1$}  {error}").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_each_in_aligned_columns() {
        let rows = [
            FailureRow {
                path: "d/bad.csv".into(),
                failures: Some(3),
                error: "line 2:\nfields".into(),
            },
            FailureRow {
                path: "d/x".into(),
                failures: None,
                error: "boom".into(),
            },
        ];
        assert_eq!(
            table(&rows),
            "PATH       FAILURES  ERROR\nd/bad.csv  3         line 2: fields\nd/x        -         boom\n"
        );
    }
}
