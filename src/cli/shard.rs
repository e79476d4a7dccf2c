//! `--shard I/N` and `--shard-from-env`: which shard this process runs,
//! checked once the flags are parsed. Every mistake is exit 2 with one
//! line naming the flag or variable and its value: a scheduler's log shows
//! one line per failed task, and it should say which task and why.

use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::ArgMatches;

use super::args::RunArgs;

/// The Kubernetes Indexed Job's index of the pod (from 0).
const K8S_INDEX: &str = "JOB_COMPLETION_INDEX";
/// A Slurm array task's id, and what turns ids into indexes from 0.
const SLURM_ID: &str = "SLURM_ARRAY_TASK_ID";
const SLURM_MIN: &str = "SLURM_ARRAY_TASK_MIN";
const SLURM_STEP: &str = "SLURM_ARRAY_TASK_STEP";
const SLURM_COUNT: &str = "SLURM_ARRAY_TASK_COUNT";

/// Settles the shard the flags name into `run.shard_of`. `queue`: the
/// flags belong to `batchproc queue`, which takes none.
pub(super) fn resolve(
    run: &mut RunArgs,
    matches: &ArgMatches,
    queue: bool,
) -> Result<(), clap::Error> {
    let named = |id: &str, flag: &str| match matches.value_source(id) {
        Some(ValueSource::EnvVariable) => format!("BATCHPROC_{}", id.to_uppercase()),
        _ => flag.to_owned(),
    };
    let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    run.shard_of = shard_of(run, queue, named, env)
        .map_err(|message| clap::Error::raw(ErrorKind::InvalidValue, format!("{message}\n")))?;
    Ok(())
}

/// The shard `(index, count)` the flags name, or a line saying what is
/// wrong. `named` says how a flag was given (`--shard`, or the variable
/// it came from); `env` reads the environment.
fn shard_of(
    run: &RunArgs,
    queue: bool,
    named: impl Fn(&str, &str) -> String,
    env: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<Option<(u32, u32)>, String> {
    // How each flag was given, for the messages: the flag, or the variable.
    let shard_flag = || named("shard", "--shard");
    let from_env_flag = || named("shard_from_env", "--shard-from-env");
    let shards_flag = || named("shards", "--shards");
    if queue {
        let given = match () {
            _ if run.shard.is_some() => Some(shard_flag()),
            _ if run.shard_from_env => Some(from_env_flag()),
            _ if run.shards.is_some() => Some(shards_flag()),
            _ => None,
        };
        if let Some(flag) = given {
            return Err(format!(
                "{flag}: a queue is already shared by its consumers; run several \
                 `batchproc queue` processes without --shard"
            ));
        }
    }
    let shards = run
        .shards
        .as_deref()
        .map(|text| count(text).map_err(|e| format!("{} '{text}': {e}", shards_flag())))
        .transpose()?;
    match (&run.shard, run.shard_from_env, shards) {
        (Some(_), true, _) => Err(format!(
            "{} and {} exclude each other: give one of them",
            shard_flag(),
            from_env_flag()
        )),
        (Some(_), false, Some(_)) => Err(format!(
            "{} goes with --shard-from-env; {} I/N names the count itself",
            shards_flag(),
            shard_flag()
        )),
        (Some(text), false, None) => parse(text)
            .map(Some)
            .map_err(|e| format!("{} '{text}': {e}", shard_flag())),
        (None, true, shards) => from_env(env, shards)
            .map(Some)
            .map_err(|e| format!("{}: {e}", from_env_flag())),
        (None, false, Some(_)) => Err(format!("{} needs --shard-from-env", shards_flag())),
        (None, false, None) => Ok(None),
    }
}

/// `I/N`: shard I (from 1) of N.
fn parse(text: &str) -> Result<(u32, u32), String> {
    let expected = || "expected I/N, shard I of N counted from 1 (e.g. 2/3)".to_owned();
    let (index, count) = text.split_once('/').ok_or_else(expected)?;
    let (Ok(index), Ok(count)) = (whole(index), whole(count)) else {
        return Err(expected());
    };
    if count == 0 {
        return Err("there must be at least one shard".into());
    }
    if !(1..=count).contains(&index) {
        return Err(format!("shards are numbered 1 to {count}"));
    }
    Ok((index, count))
}

/// A number of shards, at least 1.
fn count(text: &str) -> Result<u32, String> {
    match whole(text) {
        Ok(0) | Err(_) => Err("expected a number of shards, at least 1".into()),
        Ok(n) => Ok(n),
    }
}

/// Digits only (no sign, no spaces), as an index or a count.
fn whole(text: &str) -> Result<u32, ()> {
    match !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        true => text.parse().map_err(|_| ()),
        false => Err(()),
    }
}

/// The shard from a Kubernetes Indexed Job (`JOB_COMPLETION_INDEX`, from
/// 0, with `shards`) or else a Slurm array (`(SLURM_ARRAY_TASK_ID -
/// SLURM_ARRAY_TASK_MIN) / SLURM_ARRAY_TASK_STEP`, of
/// `SLURM_ARRAY_TASK_COUNT` unless `shards` says).
fn from_env(
    env: impl Fn(&str) -> Option<std::ffi::OsString>,
    shards: Option<u32>,
) -> Result<(u32, u32), String> {
    // A variable as a whole number, with what it says when it is not.
    let number = |name: &str| -> Result<Option<u32>, String> {
        let Some(value) = env(name) else {
            return Ok(None);
        };
        let text = value.to_string_lossy();
        whole(&text)
            .map(Some)
            .map_err(|()| format!("{name}='{text}' is not a whole number"))
    };
    if let Some(index) = number(K8S_INDEX)? {
        let count = shards.ok_or_else(|| {
            format!(
                "{K8S_INDEX}={index} gives the shard; give the number of shards with --shards N"
            )
        })?;
        if index >= count {
            return Err(format!(
                "{K8S_INDEX}={index} is out of range for --shards {count} (0 to {})",
                count - 1
            ));
        }
        return Ok((index + 1, count));
    }
    let Some(id) = number(SLURM_ID)? else {
        return Err(format!(
            "neither {K8S_INDEX} (a Kubernetes Indexed Job) nor {SLURM_ID} (a Slurm array) is set"
        ));
    };
    let min = number(SLURM_MIN)?.unwrap_or(0);
    let step = number(SLURM_STEP)?.unwrap_or(1);
    let count = match shards {
        Some(n) => n,
        None => match number(SLURM_COUNT)? {
            Some(0) => return Err(format!("{SLURM_COUNT}=0: there must be at least one shard")),
            Some(n) => n,
            None => return Err(format!("{SLURM_COUNT} is not set; give --shards N")),
        },
    };
    if step == 0 || id < min || (id - min) % step != 0 {
        return Err(format!(
            "{SLURM_ID}={id} is not in an array from {SLURM_MIN}={min} by {SLURM_STEP}={step}"
        ));
    }
    let index = (id - min) / step;
    if index >= count {
        return Err(format!(
            "{SLURM_ID}={id} is task {index} (from 0) of an array of {count}: out of range"
        ));
    }
    Ok((index + 1, count))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<std::ffi::OsString> + 'a {
        move |name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| v.into())
    }

    #[test]
    fn a_shard_is_i_of_n_from_1() {
        assert_eq!(parse("2/3"), Ok((2, 3)));
        assert_eq!(parse("1/1"), Ok((1, 1)));
        for bad in [
            "0/3", "4/3", "a/b", "3", "1/0", "/3", "2/", "-1/3", "+2/3", " 2/3", "2/3/4",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn kubernetes_counts_from_0_and_needs_the_count() {
        let k8s = |index| [(K8S_INDEX, index)];
        assert_eq!(from_env(env(&k8s("1")), Some(3)), Ok((2, 3)));
        assert_eq!(from_env(env(&k8s("0")), Some(1)), Ok((1, 1)));
        assert!(from_env(env(&k8s("3")), Some(3))
            .unwrap_err()
            .contains("JOB_COMPLETION_INDEX=3 is out of range"));
        assert!(from_env(env(&k8s("1")), None)
            .unwrap_err()
            .contains("--shards"));
        assert!(from_env(env(&k8s("x")), Some(3))
            .unwrap_err()
            .contains("JOB_COMPLETION_INDEX='x'"));
        // Kubernetes first, whatever Slurm says.
        let both = [(K8S_INDEX, "0"), (SLURM_ID, "2"), (SLURM_COUNT, "3")];
        assert_eq!(from_env(env(&both), Some(2)), Ok((1, 2)));
    }

    #[test]
    fn a_slurm_task_is_its_place_in_the_array() {
        // --array=1-3: ids 1, 2, 3.
        let task = [(SLURM_ID, "2"), (SLURM_MIN, "1"), (SLURM_COUNT, "3")];
        assert_eq!(from_env(env(&task), None), Ok((2, 3)));
        // --array=0-3, MIN and STEP unset.
        let task = [(SLURM_ID, "3"), (SLURM_COUNT, "4")];
        assert_eq!(from_env(env(&task), None), Ok((4, 4)));
        // --array=0-15:4: ids 0, 4, 8, 12.
        let task = [(SLURM_ID, "8"), (SLURM_STEP, "4"), (SLURM_COUNT, "4")];
        assert_eq!(from_env(env(&task), None), Ok((3, 4)));
        // --shards wins over the array's count.
        let task = [(SLURM_ID, "1"), (SLURM_COUNT, "4")];
        assert_eq!(from_env(env(&task), Some(2)), Ok((2, 2)));
        for (task, needle) in [
            (&[(SLURM_ID, "2")][..], "SLURM_ARRAY_TASK_COUNT is not set"),
            (&[(SLURM_ID, "4"), (SLURM_COUNT, "4")], "out of range"),
            (
                &[(SLURM_ID, "0"), (SLURM_MIN, "1"), (SLURM_COUNT, "3")],
                "is not in",
            ),
            (
                &[(SLURM_ID, "x"), (SLURM_COUNT, "3")],
                "SLURM_ARRAY_TASK_ID='x'",
            ),
            (&[], "neither JOB_COMPLETION_INDEX"),
        ] {
            let error = from_env(env(task), None).unwrap_err();
            assert!(error.contains(needle), "{task:?}: {error}");
        }
    }
}
