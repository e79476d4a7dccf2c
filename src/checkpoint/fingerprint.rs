//! The pipeline fingerprint: what gives a run's results their meaning
//! (source, filters, processors, sink, table), digested so that `--resume`
//! finds the run of the same pipeline and never mixes results of another.
//!
//! The digest is of an explicit, versioned encoding (written down in
//! docs/DESIGN.md), never of `Debug` output, which may change with the
//! compiler or a dependency and would quietly turn a resume after an
//! upgrade into a new run. Changing the encoding is deliberate: a test pins
//! the fingerprint of a known pipeline.
//!
//! Runs recorded before version 2 were fingerprinted from `Debug` text. So
//! that they still resume, [`Fingerprint::legacy`] reproduces that digest,
//! frozen as it was; it is only ever used to find such a run.

use std::path::PathBuf;

use sha2::{Digest, Sha256};

/// The prefix of every fingerprint of the current encoding.
pub(crate) const FINGERPRINT_VERSION: &str = "v2:";

/// One part of what a pipeline means, as a typed value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Part {
    Text(String),
    Flag(bool),
    Paths(Vec<PathBuf>),
    Texts(Vec<String>),
    Depth(Option<usize>),
    /// Processor specs as given (`sha256`, `sha256:body`, `exec:wc -l {}`).
    Processors(Vec<String>),
}

impl Part {
    /// The part as a list of byte strings: the values the encoding holds.
    fn values(&self) -> Vec<Vec<u8>> {
        use std::os::unix::ffi::OsStrExt;
        match self {
            Part::Text(s) => vec![s.as_bytes().to_vec()],
            Part::Flag(b) => vec![if *b {
                b"true".to_vec()
            } else {
                b"false".to_vec()
            }],
            Part::Paths(paths) => paths
                .iter()
                .map(|p| p.as_os_str().as_bytes().to_vec())
                .collect(),
            Part::Texts(texts) | Part::Processors(texts) => {
                texts.iter().map(|s| s.as_bytes().to_vec()).collect()
            }
            Part::Depth(depth) => depth.iter().map(|d| d.to_string().into_bytes()).collect(),
        }
    }

    /// The text version 1 digested for this part: `Debug` output, frozen.
    fn legacy_text(&self) -> String {
        match self {
            Part::Text(s) => s.clone(),
            Part::Flag(b) => b.to_string(),
            Part::Paths(paths) => format!("{paths:?}"),
            Part::Texts(texts) => format!("{texts:?}"),
            Part::Depth(depth) => format!("{depth:?}"),
            Part::Processors(specs) if specs.iter().any(|s| s.contains(',')) => {
                format!("{specs:?}")
            }
            Part::Processors(specs) => specs.join(","),
        }
    }
}

/// The named parts of a pipeline, in a fixed order: the source's first,
/// then the processors, the sink and the table.
#[derive(Debug, Clone, Default)]
pub(crate) struct Fingerprint {
    parts: Vec<(&'static str, Part)>,
}

impl Fingerprint {
    pub(crate) fn add(&mut self, name: &'static str, part: Part) -> &mut Self {
        self.parts.push((name, part));
        self
    }

    /// `v2:` and 32 hex digits: the first 16 bytes of the SHA-256 of
    ///
    /// ```text
    /// batchproc pipeline v2\n
    /// then for each part: NAME \n COUNT \n, and for each value: LENGTH \n BYTES \n
    /// ```
    ///
    /// with numbers in decimal. Every value is length-prefixed, so no
    /// choice of bytes in a path or a command can make two pipelines
    /// encode alike.
    pub(crate) fn digest(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"batchproc pipeline v2\n");
        for (name, part) in &self.parts {
            let values = part.values();
            h.update(format!("{name}\n{}\n", values.len()));
            for value in values {
                h.update(format!("{}\n", value.len()));
                h.update(&value);
                h.update(b"\n");
            }
        }
        format!("{FINGERPRINT_VERSION}{}", hex16(h))
    }

    /// The digest version 1 gave the same pipeline (NAME \0 TEXT \0 per
    /// part, TEXT partly `Debug` output), to find runs it recorded.
    pub(crate) fn legacy(&self) -> String {
        let mut h = Sha256::new();
        for (name, part) in &self.parts {
            h.update(name.as_bytes());
            h.update([0]);
            h.update(part.legacy_text().as_bytes());
            h.update([0]);
        }
        hex16(h)
    }
}

fn hex16(h: Sha256) -> String {
    h.finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `batchproc files d -p sha256,lines -o out.db`.
    fn files_pipeline() -> Fingerprint {
        let mut fp = Fingerprint::default();
        fp.add("command", Part::Text("files".into()))
            .add("roots", Part::Paths(vec!["d".into()]))
            .add("include", Part::Texts(vec![]))
            .add("exclude", Part::Texts(vec![]))
            .add("max_depth", Part::Depth(None))
            .add("follow", Part::Flag(false))
            .add(
                "processors",
                Part::Processors(vec!["sha256".into(), "lines".into()]),
            )
            .add("sink", Part::Text("sqlite:out.db".into()))
            .add("table", Part::Text("files".into()));
        fp
    }

    #[test]
    fn the_fingerprint_of_a_known_pipeline_is_pinned() {
        // Computed apart from this code, by Python's hashlib from the
        // encoding as docs/DESIGN.md writes it down. Changing this value
        // makes every unfinished run unresumable: change it only with a new
        // version and a way to find the old runs.
        assert_eq!(
            files_pipeline().digest(),
            "v2:6cd9265a3262863269a31be559b69db0"
        );
    }

    #[test]
    fn runs_of_version_1_are_found_by_their_old_digest() {
        // What batchproc before version 2 stored in batchproc_runs for this
        // pipeline (read back from a run of that binary).
        assert_eq!(
            files_pipeline().legacy(),
            "31fba6a53dd039afb9643abf02fc1d5c"
        );
    }

    #[test]
    fn values_are_length_prefixed() {
        let one = |parts: Vec<String>| {
            let mut fp = Fingerprint::default();
            fp.add("processors", Part::Processors(parts));
            fp.digest()
        };
        assert_ne!(
            one(vec!["exec:a,sha256".into()]),
            one(vec!["exec:a".into(), "sha256".into()])
        );
        assert_ne!(
            one(vec!["a\n1\nb".into()]),
            one(vec!["a".into(), "b".into()])
        );
    }
}
