//! A sharded attack on a real Slurm cluster: `deploy/slurm/anu-array.sbatch` submitted as a
//! 3-task job array, the shards merged by a job that depends on it, and the result compared
//! with the unsharded run. Needs a running cluster (`sinfo` answers; `.ci/slurm-cluster`
//! starts a one-node one); without one the test says so and passes, unless
//! ANU_REQUIRE_SLURM_TEST=1 (set by CI once its cluster is up), where it fails.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Instant;

use serde_json::Value;

fn cluster_is_up() -> bool {
    Command::new("sinfo")
        .args(["-h", "-o", "%a"])
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("up"))
}

fn ok(what: &str, out: Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn read(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

#[test]
fn a_slurm_array_of_three_shards_merges_to_the_unsharded_run() {
    if !cluster_is_up() {
        let required = std::env::var("ANU_REQUIRE_SLURM_TEST").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "ANU_REQUIRE_SLURM_TEST=1 but no Slurm cluster answers `sinfo`"
        );
        eprintln!("skipped: no Slurm cluster (`sinfo` does not answer); .ci/slurm-cluster starts one");
        return;
    }
    let anu = env!("CARGO_BIN_EXE_anu");
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let attack: Vec<String> = [
        "attack",
        "--dataset",
        "mnist",
        "--attack",
        "anu",
        "--steps",
        "20",
        "--n",
        "20",
        "--batch-size",
        "4",
        "--data-dir",
        &common::data_dir().display().to_string(),
        "--model-file",
        &common::mnist_model_path().display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();

    let whole_path = dir.join("whole.json");
    let t0 = Instant::now();
    ok(
        "the unsharded attack",
        Command::new(anu)
            .args(&attack)
            .arg("--json")
            .arg(&whole_path)
            .output()
            .unwrap(),
    );
    let unsharded = t0.elapsed();

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/slurm/anu-array.sbatch");
    let sharded = dir.join("r.json");
    let t0 = Instant::now();
    let submitted = ok(
        "sbatch of the array",
        Command::new("sbatch")
            .args(["--parsable", "--array=0-2", "--cpus-per-task=1"])
            .arg(format!("--output={}/anu-%A_%a.out", dir.display()))
            .arg(format!("--export=ALL,ANU_BIN={anu}"))
            .arg(&script)
            .args(&attack)
            .arg("--json")
            .arg(&sharded)
            .output()
            .unwrap(),
    );
    let job = submitted.trim().split(';').next().unwrap().to_string();
    let merged_path = dir.join("merged.json");
    let shards: Vec<String> = (0..3)
        .map(|i| dir.join(format!("r.shard-{i}-of-3.json")).display().to_string())
        .collect();
    ok(
        "the merge job",
        Command::new("sbatch")
            .args(["--wait", "--parsable", &format!("--dependency=afterok:{job}")])
            .arg(format!("--output={}/merge.out", dir.display()))
            .arg(format!(
                "--wrap={anu} merge {} {}",
                merged_path.display(),
                shards.join(" ")
            ))
            .output()
            .unwrap(),
    );
    let through_slurm = t0.elapsed();
    for i in 0..3 {
        let log = std::fs::read_to_string(dir.join(format!("anu-{job}_{i}.out"))).unwrap_or_default();
        assert!(
            log.contains(&format!("shard {i}/3 (Slurm array task {i} of 3")),
            "task {i}: {log}"
        );
        eprintln!("task {i}: {}", log.lines().last().unwrap_or(""));
    }
    let merge_log = std::fs::read_to_string(dir.join("merge.out")).unwrap_or_default();
    eprintln!("merge: {}", merge_log.trim());

    let whole = read(&whole_path);
    let merged = read(&merged_path);
    for field in ["norms", "success_rate", "mean_l2", "median_l2", "n_attacks"] {
        assert_eq!(merged[field], whole[field], "{field}");
    }
    eprintln!(
        "unsharded: {:.1} s wall, {:.2} s of attack loops; through Slurm (3 tasks, then the merge): {:.1} s wall, \
         {:.2} s of attack loops; mean L2 {} median {} success {}",
        unsharded.as_secs_f64(),
        whole["seconds"].as_f64().unwrap(),
        through_slurm.as_secs_f64(),
        merged["seconds"].as_f64().unwrap(),
        merged["mean_l2"],
        merged["median_l2"],
        merged["success_rate"]
    );
}
