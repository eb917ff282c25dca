//! An interrupted attack campaign continues where it stopped and ends with the results an
//! uninterrupted one gives: through the library (`attack_remaining` from a saved
//! `CampaignCheckpoint`) and through `anu attack` killed after its first batch.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anu::attack::{
    AttackSet, AttackSpec, Campaign, CampaignCheckpoint, Ddn, Execution, NoObserver, NormUpdate, attack_all,
    attack_remaining,
};
use anu::models::weights;
use burn::prelude::*;

#[test]
fn a_campaign_resumed_from_its_saved_progress_equals_an_uninterrupted_one() {
    let device = Device::flex();
    let model = weights::load(&common::mnist_model_path(), &device).unwrap().model;
    let set = AttackSet::untargeted(common::mnist_test(10));
    let spec = AttackSpec::new(20, NormUpdate::Ddn(Ddn { gamma: 0.05 })).unwrap();
    let execution = Execution::new(4, 64).unwrap();
    let whole = attack_all(&model, &set, &spec, &execution, &device, false, &mut NoObserver).unwrap();

    // A first run that saves after every batch and stops after its first (4 attacks).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("partial.json");
    let run = serde_json::json!({"attack": "ddn", "steps": 20});
    let first_batch = AttackSet {
        data: set.data.take(4),
        targets: None,
    };
    let mut checkpoint = CampaignCheckpoint::resume_or_new(&path, run.clone(), &set).unwrap();
    checkpoint.start_segment("flex".into(), "test".into(), "test".into());
    let first = attack_all(&model, &first_batch, &spec, &execution, &device, false, &mut NoObserver).unwrap();
    checkpoint.record(&first);
    checkpoint.save(&path).unwrap();

    let mut resumed = CampaignCheckpoint::resume_or_new(&path, run, &set).unwrap();
    assert_eq!(resumed.done(), 4);
    resumed.start_segment("flex".into(), "test".into(), "test".into());
    let mut saves = 0;
    let campaign = Campaign {
        model: &model,
        set: &set,
        spec: &spec,
        execution: &execution,
        device: &device,
    };
    let rest = attack_remaining(&campaign, resumed.result(), &mut NoObserver, &mut |so_far| {
        saves += 1;
        resumed.record(so_far);
    })
    .unwrap();
    assert_eq!(saves, 2, "two batches were left: 4 + 2 attacks");
    assert_eq!(rest.norms, whole.norms);
    assert_eq!(rest.success, whole.success);
    assert_eq!(
        resumed.segments.iter().map(|s| s.attacks).collect::<Vec<_>>(),
        vec![4, 6]
    );
}

fn attack_command(json: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_anu"));
    cmd.args(["attack", "--dataset", "mnist", "--data-dir"])
        .arg(common::data_dir())
        .arg("--model-file")
        .arg(common::mnist_model_path())
        .args([
            "--attack",
            "ddn",
            "--steps",
            "300",
            "--n",
            "12",
            "--batch-size",
            "4",
            "--json",
        ])
        .arg(json);
    cmd
}

fn norms(json: &Path) -> Vec<Option<f64>> {
    let value: serde_json::Value = serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap();
    serde_json::from_value(value["norms"].clone()).unwrap()
}

#[test]
fn anu_attack_killed_after_a_batch_continues_from_its_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole.json");
    assert!(attack_command(&whole).output().unwrap().status.success());
    assert!(
        !dir.path().join(".whole.json.part").exists(),
        "partial file left behind"
    );

    let json = dir.path().join("interrupted.json");
    let partial = dir.path().join(".interrupted.json.part");
    let mut child = attack_command(&json).spawn().unwrap();
    let started = Instant::now();
    while !partial.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before saving a batch"
        );
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no partial file after 300 s"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!json.exists(), "the run finished before it was killed");
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&partial).unwrap()).unwrap();
    let done = saved["norms"].as_array().unwrap().len();
    assert!(done == 4 || done == 8, "{done} attacks saved");

    let out = attack_command(&json).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("{done} of 12 attacks done")),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!partial.exists(), "partial file left behind");
    assert_eq!(norms(&json), norms(&whole));
    let result: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let shares: Vec<u64> = result["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["attacks"].as_u64().unwrap())
        .collect();
    assert_eq!(shares, vec![done as u64, 12 - done as u64]);

    // A partial file that is not one is refused by name, and left alone.
    let planted = std::fs::read(&whole).unwrap();
    std::fs::write(&partial, &planted).unwrap();
    let out = attack_command(&json).output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(".interrupted.json.part"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&partial).unwrap(), planted);
}
