//! `anu attack --shard I/N` (or a scheduler's array variables) and `anu merge`: the merged
//! parts of a run are the unsharded run, bit for bit, untargeted and targeted, for any number
//! of parts; parts that overlap, leave a gap or belong to another experiment are refused with
//! the file named.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The scheduler variables a sharded run reads; removed from every command so that a test
/// run inside a job array does not shard by accident.
const SCHEDULER_VARS: [&str; 6] = [
    "SLURM_ARRAY_TASK_ID",
    "SLURM_ARRAY_TASK_COUNT",
    "SLURM_ARRAY_TASK_MIN",
    "SLURM_ARRAY_TASK_STEP",
    "JOB_COMPLETION_INDEX",
    "ANU_SHARD_COUNT",
];

fn anu(args: &[&str], env: &[(&str, String)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_anu"));
    cmd.args(args);
    for var in SCHEDULER_VARS {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn refused(out: Output) -> String {
    assert!(!out.status.success(), "should have been refused");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// An MNIST attack: `targeted` or not, 12 images, 8 DDN iterations, batches of `batch`.
fn attack_args(json: &Path, targeted: bool, batch: usize, steps: usize) -> Vec<String> {
    let mut args: Vec<String> = ["attack", "--dataset", "mnist", "--attack", "ddn", "--n", "12"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend([
        "--data-dir".into(),
        common::data_dir().display().to_string(),
        "--model-file".into(),
        common::mnist_model_path().display().to_string(),
        "--steps".into(),
        steps.to_string(),
        "--batch-size".into(),
        batch.to_string(),
        "--json".into(),
        json.display().to_string(),
    ]);
    if targeted {
        args.push("--targeted".into());
    }
    args
}

fn run_attack(json: &Path, targeted: bool, batch: usize, extra: &[&str], env: &[(&str, String)]) -> Output {
    let mut args = attack_args(json, targeted, batch, 8);
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    anu(&refs, env)
}

fn read(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn shard_file(dir: &Path, index: usize, count: usize) -> PathBuf {
    dir.join(format!("r.shard-{index}-of-{count}.json"))
}

fn merge(out: &Path, shards: &[PathBuf]) -> Output {
    let mut args = vec!["merge".to_string(), out.display().to_string()];
    args.extend(shards.iter().map(|p| p.display().to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    anu(&refs, &[])
}

/// Runs `count` shards (by flag, or by Slurm's or Kubernetes' variables), merges them and
/// checks that the merged file holds the unsharded run's results exactly.
fn shards_merge_to(whole: &Value, dir: &Path, targeted: bool, batch: usize, count: usize, how: &str) {
    let json = dir.join("r.json");
    let mut files = Vec::new();
    for index in 0..count {
        let out = match how {
            "flag" => run_attack(&json, targeted, batch, &["--shard", &format!("{index}/{count}")], &[]),
            "slurm" => run_attack(
                &json,
                targeted,
                batch,
                &[],
                &[
                    ("SLURM_ARRAY_TASK_ID", (index + 1).to_string()),
                    ("SLURM_ARRAY_TASK_MIN", "1".into()),
                    ("SLURM_ARRAY_TASK_COUNT", count.to_string()),
                ],
            ),
            "kubernetes" => run_attack(
                &json,
                targeted,
                batch,
                &[],
                &[
                    ("JOB_COMPLETION_INDEX", index.to_string()),
                    ("ANU_SHARD_COUNT", count.to_string()),
                ],
            ),
            _ => unreachable!(),
        };
        let out = ok(out);
        if how != "flag" {
            let said = String::from_utf8_lossy(&out.stderr);
            assert!(said.contains(&format!("shard {index}/{count}")), "{how}: {said}");
        }
        files.push(if count == 1 {
            json.clone()
        } else {
            shard_file(dir, index, count)
        });
    }
    // In any order.
    files.reverse();
    let merged_path = dir.join(format!("merged-{count}.json"));
    let merge_out = merge(&merged_path, &files);
    if count == 1 {
        // A "1/1" shard is the whole run, written under the plain name, with its part recorded.
        let single = read(&json);
        assert_eq!(single["norms"], whole["norms"]);
        assert_eq!(single["shard"]["end"], whole["n_attacks"]);
    }
    ok(merge_out);
    let merged = read(&merged_path);
    for field in [
        "norms",
        "success_rate",
        "mean_l2",
        "median_l2",
        "n_attacks",
        "n_images",
        "spec",
    ] {
        assert_eq!(
            merged[field], whole[field],
            "{count} shards ({how}), targeted {targeted}: {field}"
        );
    }
    assert!(merged.get("shard").is_none());
    assert_eq!(merged["merged_from"].as_array().unwrap().len(), count);
    for f in files {
        std::fs::remove_file(f).unwrap();
    }
}

#[test]
fn merged_shards_equal_the_unsharded_run_untargeted_and_targeted() {
    let dir = tempfile::tempdir().unwrap();
    for (targeted, batch) in [(false, 2), (true, 10)] {
        let whole_path = dir.path().join(format!("whole-{targeted}.json"));
        ok(run_attack(&whole_path, targeted, batch, &[], &[]));
        let whole = read(&whole_path);
        assert_eq!(whole["n_attacks"], if targeted { 108 } else { 12 });
        let norms = whole["norms"].as_array().unwrap();
        assert!(norms.iter().any(|n| !n.is_null()), "some attacks must succeed");
        // 7 shards of 6 batches: one shard is empty.
        for count in [1, 2, 3, 7] {
            shards_merge_to(&whole, dir.path(), targeted, batch, count, "flag");
        }
        shards_merge_to(&whole, dir.path(), targeted, batch, 3, "slurm");
        shards_merge_to(&whole, dir.path(), targeted, batch, 2, "kubernetes");
    }
}

#[test]
fn gaps_overlaps_and_shards_of_other_experiments_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    for index in 0..3 {
        ok(run_attack(&json, false, 2, &["--shard", &format!("{index}/3")], &[]));
    }
    let s = |i| shard_file(dir.path(), i, 3);
    let out = dir.path().join("merged.json");

    let err = refused(merge(&out, &[s(0), s(2)]));
    assert!(err.contains("shards missing: 1/3"), "{err}");
    let err = refused(merge(&out, &[s(0), s(1), s(1), s(2)]));
    assert!(err.contains("both shard 1/3"), "{err}");

    // The same shard of another experiment (more iterations) is named.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let mut args = attack_args(&other.join("r.json"), false, 2, 9);
    args.extend(["--shard".to_string(), "1/3".to_string()]);
    ok(anu(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[]));
    let foreign = other.join("r.shard-1-of-3.json");
    let err = refused(merge(&out, &[s(0), foreign.clone(), s(2)]));
    assert!(
        err.contains(&foreign.display().to_string()) && err.contains("another experiment") && err.contains("steps"),
        "{err}"
    );

    // A shard made with another batch size covers other attacks: an overlap or a gap.
    let batch3 = dir.path().join("b3");
    std::fs::create_dir(&batch3).unwrap();
    ok(run_attack(&batch3.join("r.json"), false, 2, &["--shard", "1/2"], &[]));
    let mut args = attack_args(&batch3.join("r.json"), false, 3, 8);
    args.extend(["--shard".to_string(), "0/2".to_string()]);
    ok(anu(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[]));
    let err = refused(merge(
        &out,
        &[batch3.join("r.shard-0-of-2.json"), batch3.join("r.shard-1-of-2.json")],
    ));
    assert!(err.contains("batch_size"), "{err}");

    // An unsharded result, a damaged file and a shard of a shard count of 2 are named.
    let whole = dir.path().join("whole.json");
    ok(run_attack(&whole, false, 2, &[], &[]));
    let err = refused(merge(&out, &[s(0), whole.clone()]));
    assert!(
        err.contains("whole.json") && err.contains("not the result of a sharded run"),
        "{err}"
    );
    let damaged = dir.path().join("damaged.json");
    std::fs::write(&damaged, b"{\"attack\": ").unwrap();
    let err = refused(merge(&out, &[s(0), damaged]));
    assert!(err.contains("damaged.json"), "{err}");
    let err = refused(merge(&out, &[s(0), s(1), batch3.join("r.shard-1-of-2.json")]));
    assert!(err.contains("r.shard-1-of-2.json"), "{err}");
    assert!(!out.exists(), "nothing is written when the merge is refused");

    // A bad shard or scheduler setting stops before any work.
    let err = refused(run_attack(&json, false, 2, &["--shard", "3/3"], &[]));
    assert!(err.contains("from 0 to 2"), "{err}");
    let err = refused(run_attack(
        &json,
        false,
        2,
        &[],
        &[("JOB_COMPLETION_INDEX", "1".into())],
    ));
    assert!(err.contains("ANU_SHARD_COUNT"), "{err}");
    let err = refused(run_attack(&json, false, 2, &["--shard", "0/2", "--trace"], &[]));
    assert!(err.contains("--trace"), "{err}");
}

fn robustness(out: &Path, models: &[&str], extra: &[&str]) -> Output {
    let mut args: Vec<String> = [
        "robustness",
        "--dataset",
        "mnist",
        "--steps",
        "8",
        "--n",
        "10",
        "--batch-size",
        "3",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(["--data-dir".into(), common::data_dir().display().to_string()]);
    for m in models {
        args.extend([
            "--model-file".into(),
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("models")
                .join(m)
                .display()
                .to_string(),
        ]);
    }
    args.extend(["--out".into(), out.display().to_string()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    anu(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[])
}

#[test]
fn merged_robustness_shards_give_the_unsharded_curves_table_and_figures() {
    let dir = tempfile::tempdir().unwrap();
    let models = ["mnist-cnn.safetensors", "mnist-at-anu70.safetensors"];
    let whole = dir.path().join("whole");
    ok(robustness(&whole, &models, &[]));
    let out = dir.path().join("r");
    // 4 batches in 5 shards: one has no images.
    let shards: Vec<PathBuf> = (0..5)
        .map(|i| {
            ok(robustness(&out, &models, &["--shard", &format!("{i}/5")]));
            dir.path().join(format!("r.shard-{i}-of-5"))
        })
        .collect();
    let merged = dir.path().join("merged");
    ok(merge(&merged, &shards));
    let (a, b) = (
        read(&whole.join("robustness.json")),
        read(&merged.join("robustness.json")),
    );
    for (ma, mb) in a["models"]
        .as_array()
        .unwrap()
        .iter()
        .zip(b["models"].as_array().unwrap())
    {
        for field in ["distances", "accuracy", "clean_accuracy", "model_sha256"] {
            assert_eq!(ma[field], mb[field], "{field}");
        }
    }
    for file in ["robustness.csv", "fig6.png", "fig5.png"] {
        assert_eq!(
            std::fs::read(whole.join(file)).unwrap(),
            std::fs::read(merged.join(file)).unwrap(),
            "{file}"
        );
    }

    // A shard of other models, and a missing shard, are refused by name.
    let other = dir.path().join("o");
    ok(robustness(&other, &models[..1], &["--shard", "2/5"]));
    let mut foreign = shards.clone();
    foreign[2] = dir.path().join("o.shard-2-of-5");
    let err = refused(merge(&dir.path().join("m2"), &foreign));
    assert!(
        err.contains("o.shard-2-of-5") && err.contains("another experiment"),
        "{err}"
    );
    let err = refused(merge(&dir.path().join("m2"), &shards[1..]));
    assert!(err.contains("shards missing: 0/5"), "{err}");
}

fn reproduce(out: &Path, extra: &[&str]) -> Output {
    let mut args: Vec<String> = [
        "reproduce",
        "--dataset",
        "mnist",
        "--n",
        "6",
        "--budgets",
        "6,12",
        "--fig4-steps",
        "12",
        "--batch-size",
        "5",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend([
        "--data-dir".into(),
        common::data_dir().display().to_string(),
        "--model-file".into(),
        common::mnist_model_path().display().to_string(),
        "--out".into(),
        out.display().to_string(),
    ]);
    args.extend(extra.iter().map(|s| s.to_string()));
    anu(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[])
}

#[test]
fn merged_reproduce_shards_give_the_unsharded_rows_and_figures() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    ok(reproduce(&whole, &[]));
    // Table 1: 6 attacks in 2 batches; Table 2: 54 in 11; 3 shards.
    let shards: Vec<PathBuf> = (0..3)
        .map(|i| {
            ok(reproduce(&dir.path().join("r"), &["--shard", &format!("{i}/3")]));
            dir.path().join(format!("r.shard-{i}-of-3"))
        })
        .collect();
    let merged = dir.path().join("merged");
    ok(merge(&merged, &shards));
    for table in ["table1", "table2"] {
        let (a, b) = (
            read(&whole.join(format!("{table}.json"))),
            read(&merged.join(format!("{table}.json"))),
        );
        let (a, b) = (a.as_array().unwrap(), b.as_array().unwrap());
        assert_eq!(a.len(), 4, "{table}: DDN and ANU at 2 budgets");
        assert_eq!(a.len(), b.len());
        for (ra, rb) in a.iter().zip(b) {
            for field in [
                "attack",
                "budget",
                "norms",
                "n_attacks",
                "success_rate",
                "mean_l2",
                "median_l2",
                "key",
            ] {
                assert_eq!(ra[field], rb[field], "{table}: {field}");
            }
        }
    }
    for figure in ["fig3.png", "fig4.png"] {
        assert_eq!(
            std::fs::read(whole.join(figure)).unwrap(),
            std::fs::read(merged.join(figure)).unwrap(),
            "{figure}"
        );
    }
    let (a, b) = (
        read(&whole.join("rows/fig4-anu.json")),
        read(&merged.join("rows/fig4-anu.json")),
    );
    assert_eq!(a["attacks"], b["attacks"]);
    for (x, y) in a["mean_norm"]
        .as_array()
        .unwrap()
        .iter()
        .zip(b["mean_norm"].as_array().unwrap())
    {
        let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
        assert!((x - y).abs() <= 1e-12 * x.abs(), "Figure 4 mean {x} vs {y}");
    }
    // The merged folder is the unsharded run's: running it again has nothing left to do.
    let again = ok(reproduce(&merged, &[]));
    assert_eq!(
        String::from_utf8_lossy(&again.stdout)
            .lines()
            .filter(|l| l.starts_with("table"))
            .count(),
        8
    );
    let rows = read(&merged.join("table2.json"));
    assert_eq!(
        rows[0]["segments"].as_array().unwrap().len(),
        3,
        "the merged rows are reused, with each shard's segment, not recomputed"
    );

    // A shard of other attacks does not hold the same rows, and is named.
    let other = dir.path().join("o");
    ok(reproduce(&other, &["--shard", "1/3", "--attacks", "ddn"]));
    let mut foreign = shards.clone();
    foreign[1] = dir.path().join("o.shard-1-of-3");
    let err = refused(merge(&dir.path().join("m2"), &foreign));
    assert!(
        err.contains("o.shard-1-of-3") && err.contains("not hold the same rows"),
        "{err}"
    );
}
