//! Splitting an evaluation over machines: part I of N of the attacked set, chosen by
//! `--shard I/N` or by the job-array variables of a scheduler (Slurm's
//! `SLURM_ARRAY_TASK_ID`/`SLURM_ARRAY_TASK_COUNT`, Kubernetes' `JOB_COMPLETION_INDEX` with
//! `ANU_SHARD_COUNT`), and the check that the parts of one experiment cover it exactly once.
//!
//! Parts are runs of whole batches: part k of N takes batches `k*B/N .. (k+1)*B/N` of the `B`
//! batches of the unsharded run. Every batch is then attacked with the same images in the same
//! places as the unsharded run, so merged parts give its results bit for bit (an attack's
//! numbers may depend on the other images of its batch through the kernels' blocking, and a
//! zero gradient's fallback direction depends on its place in the batch).

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Part `index` (from 0) of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// Which part, from 0.
    pub index: usize,
    /// Number of parts.
    pub count: usize,
}

/// Most parts an experiment may be split into.
pub const MAX_SHARDS: usize = 1_000_000;

impl Shard {
    /// Part `index` of `count`; refused unless `index < count <= MAX_SHARDS`.
    pub fn new(index: usize, count: usize) -> Result<Self> {
        if count == 0 || count > MAX_SHARDS {
            return Err(Error::Invalid(format!(
                "a shard count must be between 1 and {MAX_SHARDS}, not {count}"
            )));
        }
        if index >= count {
            return Err(Error::Invalid(format!(
                "shard {index} of {count} does not exist: shards are numbered from 0 to {}",
                count - 1
            )));
        }
        Ok(Self { index, count })
    }

    /// The attacks of this part of a campaign of `total` attacks run `batch_size` at a time:
    /// a run of whole batches (possibly empty when there are more parts than batches).
    pub fn range(self, total: usize, batch_size: usize) -> Range<usize> {
        let batches = total.div_ceil(batch_size.max(1));
        let first_batch = self.index * batches / self.count;
        let end_batch = (self.index + 1) * batches / self.count;
        (first_batch * batch_size).min(total)..(end_batch * batch_size).min(total)
    }

    /// Where a sharded run writes what the unsharded run writes to `path`: `NAME.shard-I-of-N.EXT`
    /// for a file with an extension, `NAME.shard-I-of-N` otherwise (a folder).
    pub fn output_path(self, path: &std::path::Path) -> std::path::PathBuf {
        let tag = format!("shard-{}-of-{}", self.index, self.count);
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = match path.extension() {
            Some(ext) => format!("{stem}.{tag}.{}", ext.to_string_lossy()),
            None => format!("{stem}.{tag}"),
        };
        path.with_file_name(name)
    }

    /// The shard asked for: `flag` when given, else the one the scheduler's variables (read
    /// through `var`) name, with a line saying where it came from. `Ok(None)`: no sharding.
    pub fn chosen(flag: Option<Shard>, var: impl Fn(&str) -> Option<String>) -> Result<Option<(Shard, String)>> {
        if let Some(shard) = flag {
            return Ok(Some((shard, format!("shard {shard} (--shard)"))));
        }
        let number = |name: &str| -> Result<Option<usize>> {
            match var(name) {
                None => Ok(None),
                Some(text) => text.trim().parse().map(Some).map_err(|_| {
                    Error::Invalid(format!(
                        "the environment variable {name} is {text:?}, not a whole number"
                    ))
                }),
            }
        };
        if let Some(id) = number("SLURM_ARRAY_TASK_ID")? {
            let count = number("SLURM_ARRAY_TASK_COUNT")?
                .ok_or_else(|| Error::Invalid("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not".into()))?;
            let min = number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            if let Some(step) = number("SLURM_ARRAY_TASK_STEP")?
                && step != 1
            {
                return Err(Error::Invalid(format!(
                    "the Slurm array steps by {step}: shards need consecutive task ids (e.g. --array=0-{}), \
                     or pass --shard I/N",
                    count.saturating_sub(1)
                )));
            }
            let index = id.checked_sub(min).ok_or_else(|| {
                Error::Invalid(format!("SLURM_ARRAY_TASK_ID {id} is below SLURM_ARRAY_TASK_MIN {min}"))
            })?;
            let shard = Shard::new(index, count).map_err(|e| {
                Error::Invalid(format!(
                    "the Slurm array (task {id}, {count} tasks from {min}) does not name a shard: {e}; \
                     shards need consecutive task ids, or pass --shard I/N"
                ))
            })?;
            return Ok(Some((
                shard,
                format!(
                    "shard {shard} (Slurm array task {id} of {count}, from SLURM_ARRAY_TASK_ID; --shard 0/1 runs the whole set)"
                ),
            )));
        }
        if let Some(index) = number("JOB_COMPLETION_INDEX")? {
            let count = number("ANU_SHARD_COUNT")?.ok_or_else(|| {
                Error::Invalid(
                    "JOB_COMPLETION_INDEX is set (a Kubernetes Indexed Job) but ANU_SHARD_COUNT is not: set it to \
                     the Job's completions, or pass --shard I/N"
                        .into(),
                )
            })?;
            let shard = Shard::new(index, count)?;
            return Ok(Some((
                shard,
                format!(
                    "shard {shard} (Kubernetes JOB_COMPLETION_INDEX {index}, ANU_SHARD_COUNT {count}; --shard 0/1 runs the whole set)"
                ),
            )));
        }
        Ok(None)
    }

    /// [`Self::chosen`] from the process's environment.
    pub fn from_flag_or_env(flag: Option<Shard>) -> Result<Option<(Shard, String)>> {
        Self::chosen(flag, |name| std::env::var(name).ok())
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let bad = || {
            Error::Invalid(format!(
                "a shard is written I/N (part I from 0 of N parts, e.g. 0/4), not {text:?}"
            ))
        };
        let (index, count) = text.split_once('/').ok_or_else(bad)?;
        let index = index.trim().parse().map_err(|_| bad())?;
        let count = count.trim().parse().map_err(|_| bad())?;
        Shard::new(index, count)
    }
}

/// The part of an experiment's attacked set that one result holds, recorded in the result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardPart {
    /// Which part of how many.
    pub shard: Shard,
    /// Its attacks are `first..end` of the whole set, in the whole set's order.
    pub first: usize,
    /// One past its last attack.
    pub end: usize,
    /// Attacks of the whole set.
    pub total: usize,
    /// SHA-256 of the whole attacked set (images, labels, targets), the same in every part.
    pub set_sha256: String,
}

impl ShardPart {
    /// Number of attacks in the part.
    pub fn len(&self) -> usize {
        self.end - self.first
    }

    /// Whether the part holds no attack.
    pub fn is_empty(&self) -> bool {
        self.first == self.end
    }
}

/// Checks that `parts` (each named, e.g. by its file) are all the parts of one split of one
/// set, each once, and returns their positions in set order. Parts of different splits, a
/// part given twice, overlapping or missing parts are errors that name them.
pub fn check_cover(parts: &[(String, ShardPart)]) -> Result<Vec<usize>> {
    let Some((first_name, first)) = parts.first() else {
        return Err(Error::Invalid("no shards to merge".into()));
    };
    for (name, p) in parts {
        if p.shard.count != first.shard.count || p.total != first.total || p.set_sha256 != first.set_sha256 {
            return Err(Error::Invalid(format!(
                "{name} is not a part of the same split as {first_name}: it is shard {} of {} attacks \
                 (set {}), {first_name} is shard {} of {} attacks (set {})",
                p.shard,
                p.total,
                short(&p.set_sha256),
                first.shard,
                first.total,
                short(&first.set_sha256)
            )));
        }
        if p.first > p.end || p.end > p.total {
            return Err(Error::Invalid(format!(
                "{name} claims attacks {}..{} of {}: not a part of the set",
                p.first, p.end, p.total
            )));
        }
    }
    let mut order: Vec<usize> = (0..parts.len()).collect();
    order.sort_by_key(|&i| (parts[i].1.shard.index, parts[i].1.first));
    for pair in order.windows(2) {
        let (a_name, a) = &parts[pair[0]];
        let (b_name, b) = &parts[pair[1]];
        if a.shard.index == b.shard.index {
            return Err(Error::Invalid(format!(
                "{a_name} and {b_name} are both shard {}: give each shard once",
                a.shard
            )));
        }
    }
    let count = first.shard.count;
    let present: Vec<usize> = order.iter().map(|&i| parts[i].1.shard.index).collect();
    let missing: Vec<String> = (0..count)
        .filter(|i| present.binary_search(i).is_err())
        .map(|i| format!("{i}/{count}"))
        .collect();
    if !missing.is_empty() {
        let shown = missing.iter().take(10).cloned().collect::<Vec<_>>().join(", ");
        let more = if missing.len() > 10 {
            format!(" and {} more", missing.len() - 10)
        } else {
            String::new()
        };
        return Err(Error::Invalid(format!(
            "shards missing: {shown}{more} (have {} of {count})",
            parts.len()
        )));
    }
    let mut next = 0;
    for &i in &order {
        let (name, p) = &parts[i];
        if p.first != next {
            let what = if p.first > next { "a gap" } else { "an overlap" };
            return Err(Error::Invalid(format!(
                "{name} (shard {}) starts at attack {} but the shards before it end at {next}: {what} \
                 (were the shards run with different batch sizes?)",
                p.shard, p.first
            )));
        }
        next = p.end;
    }
    if next != first.total {
        return Err(Error::Invalid(format!(
            "the shards end at attack {next} of {}: a gap at the end",
            first.total
        )));
    }
    Ok(order)
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_runs_of_whole_batches_that_tile_the_set() {
        for (total, batch) in [(20, 7), (20, 1), (1000, 1000), (9, 4), (5, 10), (0, 3)] {
            for count in [1, 2, 3, 7] {
                let mut next = 0;
                for index in 0..count {
                    let r = Shard::new(index, count).unwrap().range(total, batch);
                    assert_eq!(r.start, next, "{total}/{batch} shard {index}/{count}");
                    assert!(r.start.is_multiple_of(batch) || r.start == total);
                    next = r.end;
                }
                assert_eq!(next, total, "{total}/{batch} in {count}");
            }
        }
        assert_eq!(Shard::new(1, 3).unwrap().range(20, 7), 7..14);
        assert_eq!(Shard::new(0, 1).unwrap().range(20, 7), 0..20);
    }

    #[test]
    fn shards_are_parsed_and_bad_ones_refused() {
        assert_eq!("2/5".parse::<Shard>().unwrap(), Shard { index: 2, count: 5 });
        for bad in ["5/5", "1/0", "a/3", "3", "-1/3", "1/2/3", ""] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        assert!("5/5".parse::<Shard>().unwrap_err().to_string().contains("from 0 to 4"));
    }

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: std::collections::HashMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn the_scheduler_variables_name_the_shard_and_the_flag_wins() {
        assert_eq!(Shard::chosen(None, env(&[])).unwrap(), None);
        let slurm = env(&[
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_STEP", "1"),
        ]);
        let (shard, said) = Shard::chosen(None, &slurm).unwrap().unwrap();
        assert_eq!(shard, Shard::new(2, 3).unwrap());
        assert!(said.contains("Slurm"), "{said}");
        let flag = Shard::new(0, 1).unwrap();
        assert_eq!(Shard::chosen(Some(flag), &slurm).unwrap().unwrap().0, flag);

        let k8s = env(&[("JOB_COMPLETION_INDEX", "4"), ("ANU_SHARD_COUNT", "7")]);
        assert_eq!(Shard::chosen(None, k8s).unwrap().unwrap().0, Shard::new(4, 7).unwrap());
        let err = Shard::chosen(None, env(&[("JOB_COMPLETION_INDEX", "4")])).unwrap_err();
        assert!(err.to_string().contains("ANU_SHARD_COUNT"), "{err}");

        let stepped = env(&[
            ("SLURM_ARRAY_TASK_ID", "2"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
            ("SLURM_ARRAY_TASK_STEP", "2"),
        ]);
        assert!(
            Shard::chosen(None, stepped)
                .unwrap_err()
                .to_string()
                .contains("steps by 2")
        );
        let sparse = env(&[("SLURM_ARRAY_TASK_ID", "9"), ("SLURM_ARRAY_TASK_COUNT", "3")]);
        assert!(
            Shard::chosen(None, sparse)
                .unwrap_err()
                .to_string()
                .contains("consecutive")
        );
        let junk = env(&[("SLURM_ARRAY_TASK_ID", "x"), ("SLURM_ARRAY_TASK_COUNT", "3")]);
        assert!(
            Shard::chosen(None, junk)
                .unwrap_err()
                .to_string()
                .contains("SLURM_ARRAY_TASK_ID")
        );
    }

    #[test]
    fn output_paths_carry_the_shard() {
        let s = Shard::new(1, 3).unwrap();
        assert_eq!(
            s.output_path("out/ddn.json".as_ref()),
            std::path::Path::new("out/ddn.shard-1-of-3.json")
        );
        assert_eq!(
            s.output_path("out/robust".as_ref()),
            std::path::Path::new("out/robust.shard-1-of-3")
        );
    }

    fn split(total: usize, batch: usize, count: usize) -> Vec<(String, ShardPart)> {
        (0..count)
            .map(|index| {
                let shard = Shard::new(index, count).unwrap();
                let r = shard.range(total, batch);
                (
                    format!("s{index}"),
                    ShardPart {
                        shard,
                        first: r.start,
                        end: r.end,
                        total,
                        set_sha256: "abc".into(),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn a_cover_is_accepted_in_any_order_and_gaps_overlaps_and_strangers_refused() {
        let mut parts = split(20, 3, 4);
        parts.reverse();
        assert_eq!(check_cover(&parts).unwrap(), vec![3, 2, 1, 0]);

        let mut missing = split(20, 3, 4);
        missing.remove(2);
        let err = check_cover(&missing).unwrap_err().to_string();
        assert!(err.contains("missing: 2/4"), "{err}");

        let mut twice = split(20, 3, 4);
        twice.push(twice[1].clone());
        twice.last_mut().unwrap().0 = "again".into();
        let err = check_cover(&twice).unwrap_err().to_string();
        assert!(
            err.contains("s1") && err.contains("again") && err.contains("both shard 1/4"),
            "{err}"
        );

        let mut other_set = split(20, 3, 4);
        other_set[3].1.set_sha256 = "def".into();
        let err = check_cover(&other_set).unwrap_err().to_string();
        assert!(err.starts_with("s3 is not a part"), "{err}");

        let mut other_count = split(20, 3, 4);
        other_count[0] = split(20, 3, 5).remove(0);
        assert!(
            check_cover(&other_count)
                .unwrap_err()
                .to_string()
                .contains("not a part of the same split")
        );

        // Shards of the same split made with other batch sizes overlap or leave gaps.
        let mut mixed = split(20, 3, 2);
        mixed[1] = split(20, 4, 2).remove(1);
        let err = check_cover(&mixed).unwrap_err().to_string();
        assert!(err.contains("a gap") || err.contains("an overlap"), "{err}");
    }
}
