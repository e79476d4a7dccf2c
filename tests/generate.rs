//! `batchproc completions SHELL` and `batchproc man`, checked with the
//! tools that use them: bash completes with the script, man renders the
//! pages.

mod common;

use std::process::Command;

use common::batchproc;

fn output(args: &[&str]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let out = batchproc(tmp.path()).args(args).assert().success();
    String::from_utf8(out.get_output().stdout.clone()).unwrap()
}

/// What bash's completion offers for `line` (the words typed so far, the
/// last one being completed) with the script loaded.
fn bash_completes(script: &str, line: &[&str]) -> Vec<String> {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("batchproc.bash");
    std::fs::write(&path, script).unwrap();
    let words = line.iter().map(|w| format!("'{w}'")).collect::<Vec<_>>();
    let program = format!(
        "source '{}'; COMP_WORDS=({}); COMP_CWORD={}; COMP_LINE='{}'; COMP_POINT=${{#COMP_LINE}}; \
         _batchproc batchproc '{}' '{}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        path.display(),
        words.join(" "),
        line.len() - 1,
        line.join(" "),
        line[line.len() - 1],
        line[line.len() - 2],
    );
    let out = Command::new("bash")
        .args(["-c", &program])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn bash_completes_commands_and_their_flags_with_the_script() {
    let script = output(&["completions", "bash"]);
    let commands = bash_completes(&script, &["batchproc", "q"]);
    assert_eq!(commands, ["query", "queue"]);
    let flags = bash_completes(&script, &["batchproc", "files", "--res"]);
    assert_eq!(flags, ["--resume"]);
    let shells = bash_completes(&script, &["batchproc", "completions", "f"]);
    assert_eq!(shells, ["fish"]);
}

#[test]
fn every_shell_gets_a_script_that_knows_the_commands() {
    for (shell, marker) in [
        ("zsh", "#compdef batchproc"),
        ("fish", "complete -c batchproc"),
        ("elvish", "edit:completion:arg-completer[batchproc]"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let script = output(&["completions", shell]);
        assert!(script.contains(marker), "{shell}: no {marker:?}");
        for command in ["files", "query", "runs", "failures", "man"] {
            assert!(script.contains(command), "{shell}: no {command}");
        }
    }
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    batchproc(tmp.path())
        .args(["completions", "tcsh"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("invalid value 'tcsh'"));
}

/// Renders a page with man(1), as a user reading it would see it.
fn render(page: &std::path::Path) -> String {
    let out = Command::new("man")
        .arg("-l")
        .arg(page)
        .env("MANWIDTH", "200")
        .env("MAN_KEEP_FORMATTING", "0")
        .output()
        .expect("man(1): the tests need man-db");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Plain text: drop the overstrikes man uses for bold and underline.
    let text = String::from_utf8_lossy(&out.stdout);
    let mut plain = String::new();
    for c in text.chars() {
        if c == '\u{8}' {
            plain.pop();
        } else {
            plain.push(c);
        }
    }
    // And the spaces it adds to justify lines.
    plain
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_man_page_renders_with_the_commands_and_the_exit_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let page = tmp.path().join("batchproc.1");
    std::fs::write(&page, output(&["man"])).unwrap();
    let text = render(&page);
    for expected in [
        "NAME",
        "SUBCOMMANDS",
        "batchproc-files(1)",
        "Exit codes:",
        "75 another run",
    ] {
        assert!(text.contains(expected), "no {expected:?} in:\n{text}");
    }
    assert!(
        !text.contains("batchproc-help"),
        "a page that is not written"
    );
}

#[test]
fn man_dir_writes_a_page_per_command() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("man1");
    std::fs::create_dir(&dir).unwrap();
    output(&["man", "--dir", dir.to_str().unwrap()]);
    let mut pages: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    pages.sort();
    assert_eq!(
        pages,
        [
            "batchproc-completions.1",
            "batchproc-failures.1",
            "batchproc-files.1",
            "batchproc-list.1",
            "batchproc-man.1",
            "batchproc-query.1",
            "batchproc-queue.1",
            "batchproc-run.1",
            "batchproc-runs.1",
            "batchproc.1"
        ]
    );
    let files = render(&dir.join("batchproc-files.1"));
    assert!(files.contains("--resume"), "{files}");
    // A directory that is not there is a clear error, not a panic.
    let missing = tmp.path().join("no/such/dir");
    batchproc(tmp.path())
        .args(["man", "--dir", missing.to_str().unwrap()])
        .assert()
        .code(1)
        .stderr(predicates::str::contains("no/such/dir"));
}

#[test]
fn help_of_every_command_that_runs_lists_the_exit_codes() {
    for command in [&[][..], &["files"], &["query"], &["queue"], &["run"]] {
        let args: Vec<&str> = command.iter().copied().chain(["--help"]).collect();
        // clap wraps the help to the terminal's width.
        let text = output(&args)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        for code in [
            "0 every item",
            "1 an item failed",
            "2 usage",
            "3 paused at --max-runtime",
            "75 another run",
            "130 interrupted",
            "141 stdout closed",
        ] {
            assert!(
                text.contains(code),
                "{args:?} --help lacks {code:?}:\n{text}"
            );
        }
    }
}
