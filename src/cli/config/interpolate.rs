//! `${VAR}` and `${VAR:-default}` in a config file's strings, filled from
//! the environment so that passwords and per-host paths stay out of the file.
//!
//! Written here rather than taken from `shellexpand`: that crate also
//! expands a bare `$VAR`, and a config value is often SQL (`$1`) or a
//! command line meant for a shell later, where a bare `$` must stay as is.

/// `text` with every `${VAR}` and `${VAR:-default}` filled in; `$${` stands
/// for a literal `${`. An unset variable without a default is an error
/// naming it. As in the shell, `:-` also takes the default for an empty value.
pub fn interpolate(text: &str, var: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(literal) = after.strip_prefix("${") {
            out.push_str("${");
            rest = literal;
            continue;
        }
        let Some(inner) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let Some(end) = inner.find('}') else {
            return Err(format!(
                "'${{{}' has no closing '}}'",
                inner.lines().next().unwrap_or_default()
            ));
        };
        if inner[..end].contains("${") {
            return Err(format!(
                "'${{{}' nests a '${{': not supported",
                &inner[..end]
            ));
        }
        let (name, default) = match inner[..end].split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (&inner[..end], None),
        };
        if name.is_empty() || !name.chars().all(|c| c == '_' || c.is_ascii_alphanumeric()) {
            return Err(format!("'${{{}}}' is not a variable name", &inner[..end]));
        }
        match (
            var(name).filter(|v| default.is_none() || !v.is_empty()),
            default,
        ) {
            (Some(value), _) => out.push_str(&value),
            (None, Some(default)) => out.push_str(default),
            (None, None) => return Err(format!("environment variable {name} is not set")),
        }
        rest = &inner[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::interpolate;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOME" => Some("/home/u".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn variables_and_defaults_are_filled() {
        assert_eq!(interpolate("${HOME}/x", env).unwrap(), "/home/u/x");
        assert_eq!(interpolate("${NOPE:-.}/db", env).unwrap(), "./db");
        assert_eq!(interpolate("${HOME:-.}", env).unwrap(), "/home/u");
        assert_eq!(interpolate("a${EMPTY}b", env).unwrap(), "ab");
        assert_eq!(interpolate("${EMPTY:-d}", env).unwrap(), "d");
        assert_eq!(interpolate("${NOPE:-}", env).unwrap(), "");
    }

    #[test]
    fn other_dollars_stay_as_they_are() {
        let sql = "SELECT $1, $HOME, $$, $${HOME} FROM t";
        assert_eq!(
            interpolate(sql, env).unwrap(),
            "SELECT $1, $HOME, $$, ${HOME} FROM t"
        );
        assert_eq!(interpolate("cost: 5$", env).unwrap(), "cost: 5$");
    }

    #[test]
    fn unset_and_malformed_are_named() {
        assert_eq!(
            interpolate("${NOPE}", env).unwrap_err(),
            "environment variable NOPE is not set"
        );
        assert!(interpolate("${HOME", env).unwrap_err().contains("closing"));
        assert!(interpolate("${A B}", env)
            .unwrap_err()
            .contains("not a variable name"));
    }
}
