//! `anu reproduce` on a small random model and made-up images (no data folder): it writes
//! every table and figure, reuses a saved row only for exactly the same experiment, recomputes
//! under --force, reports and recomputes damaged rows, and continues an interrupted row from
//! its finished batches.

mod common;

use std::path::Path;

use anu::attack::{AttackKind, AttackSet, CampaignCheckpoint, CampaignResult, Execution, NoObserver, attack_all};
use anu::data::{Dataset, DatasetName};
use anu::models::{Architecture, LoadedModel};
use anu::reproduce::{ReproduceOptions, Row, reproduce};
use burn::prelude::*;

fn options(out: &Path, dataset: DatasetName) -> ReproduceOptions {
    ReproduceOptions {
        dataset,
        out: out.to_path_buf(),
        attacks: AttackKind::ALL.to_vec(),
        table1_budgets: vec![4, 8],
        table2_budgets: vec![4],
        fig4_steps: 6,
        force: false,
        execution: Execution::new(10, 4).unwrap(),
        device_name: "flex".into(),
        shard: None,
    }
}

fn setup(dir: &Path, name: &str, arch: Architecture, seed: u64, dataset: DatasetName) -> (LoadedModel, Dataset) {
    let model = common::saved_random_model(dir, name, arch, seed);
    let test = common::synthetic(dataset, 3, &model.model, seed + 100);
    (model, test)
}

/// The small MNIST model of seed 1, saved as `name`, and its made-up test images.
fn mnist_setup(dir: &Path, name: &str) -> (LoadedModel, Dataset) {
    setup(dir, name, Architecture::MnistCnn, 1, DatasetName::Mnist)
}

fn row_file(out: &Path, name: &str) -> std::path::PathBuf {
    out.join("rows").join(name)
}

#[test]
fn an_empty_test_set_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let (model, test) = setup(dir.path(), "m", Architecture::MnistCnn, 3, DatasetName::Mnist);
    let out = dir.path().join("out");
    let err = reproduce(
        &model,
        &test.take(0),
        &options(&out, DatasetName::Mnist),
        &Device::flex(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("no images"), "{err}");
    assert!(!out.exists());
}

#[test]
fn tiny_reproduction_writes_tables_and_figures_and_reuses_only_matching_rows() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (model, test) = mnist_setup(dir.path(), "m.safetensors");
    let opts = options(&out, DatasetName::Mnist);
    let rows = reproduce(&model, &test, &opts, &device).unwrap();
    // DDN, ANU and FMN at budgets 4 and 8 (Table 1) and 4 (Table 2).
    assert_eq!(rows.len(), 3 * 2 + 3);
    for name in [
        "table1.md",
        "table1.json",
        "table1.csv",
        "table2.md",
        "table2.json",
        "table2.csv",
        "fig3.json",
        "fig3.png",
        "fig4.png",
        "rows/fig4-ddn.json",
    ] {
        let path = out.join(name);
        assert!(path.metadata().map(|m| m.len() > 0).unwrap_or(false), "{name} missing");
    }
    let t2: Vec<Row> = serde_json::from_str(&std::fs::read_to_string(out.join("table2.json")).unwrap()).unwrap();
    assert!(
        t2.iter()
            .all(|r| r.n_attacks == 27 && r.key.n_images == 3 && r.key.targeted)
    );
    assert!(
        t2.iter()
            .all(|r| r.key.model_sha256 == model.sha256 && r.key.dataset == DatasetName::Mnist)
    );
    let md = std::fs::read_to_string(out.join("table1.md")).unwrap();
    assert!(
        md.contains("| ANU | 8 |") && md.contains("| DDN | 4 |") && md.contains("| FMN | 8 |"),
        "{md}"
    );

    // Plant a marker in a saved row: a rerun of the same experiment reuses the file as it is.
    let path = row_file(&out, "table1-anu-8.json");
    let mut planted: Row = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let real_mean = planted.mean_l2;
    planted.mean_l2 = 123.0;
    std::fs::write(&path, serde_json::to_string(&planted).unwrap()).unwrap();
    let again = reproduce(&model, &test, &opts, &device).unwrap();
    let anu8 = |rows: &[Row]| {
        rows.iter()
            .find(|r| r.attack == AttackKind::Anu && r.budget == 8 && !r.key.targeted)
            .unwrap()
            .mean_l2
    };
    assert_eq!(anu8(&again), 123.0, "the saved row is reused");
    assert_eq!(again.len(), rows.len());

    // --force recomputes it (attacks are deterministic, so the real value comes back).
    let forced = reproduce(
        &model,
        &test,
        &ReproduceOptions {
            force: true,
            ..opts.clone()
        },
        &device,
    )
    .unwrap();
    assert_eq!(anu8(&forced), real_mean);
    assert_eq!(anu8(&forced), anu8(&rows), "the same value as the first run computed");

    // Another N is another experiment: the marker is not reused.
    std::fs::write(&path, serde_json::to_string(&planted).unwrap()).unwrap();
    let fewer = test.take(2);
    let other_n = reproduce(&model, &fewer, &opts, &device).unwrap();
    assert_ne!(anu8(&other_n), 123.0);
    assert!(other_n.iter().all(|r| r.key.n_images == 2));

    // A damaged row file is recomputed.
    std::fs::write(&path, b"{ not json").unwrap();
    let repaired = reproduce(&model, &fewer, &opts, &device).unwrap();
    assert_eq!(anu8(&repaired), anu8(&other_n));
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        serde_json::from_str::<Row>(&text).is_ok(),
        "the damaged row was rewritten"
    );
}

#[test]
fn rows_of_another_data_set_or_model_are_not_reused() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (mnist_model, mnist_test) = mnist_setup(dir.path(), "a.safetensors");
    let mnist_opts = ReproduceOptions {
        table2_budgets: vec![],
        ..options(&out, DatasetName::Mnist)
    };
    let mnist_rows = reproduce(&mnist_model, &mnist_test, &mnist_opts, &device).unwrap();

    // The same folder, CIFAR-10 and a CIFAR model: every row is recomputed for CIFAR-10.
    let (cifar_model, cifar_test) = setup(
        dir.path(),
        "c.safetensors",
        Architecture::CifarCnn,
        2,
        DatasetName::Cifar10,
    );
    let cifar_opts = ReproduceOptions {
        dataset: DatasetName::Cifar10,
        ..mnist_opts.clone()
    };
    let cifar_rows = reproduce(&cifar_model, &cifar_test, &cifar_opts, &device).unwrap();
    assert!(
        cifar_rows
            .iter()
            .all(|r| r.key.dataset == DatasetName::Cifar10 && r.key.model_sha256 == cifar_model.sha256)
    );
    let md = std::fs::read_to_string(out.join("table1.md")).unwrap();
    assert!(md.contains("cifar10") && md.contains("c.safetensors"), "{md}");

    // Another MNIST model (other weights, same architecture): recomputed too.
    let (other_model, _) = setup(
        dir.path(),
        "b.safetensors",
        Architecture::MnistCnn,
        9,
        DatasetName::Mnist,
    );
    assert_ne!(other_model.sha256, mnist_model.sha256);
    let other_rows = reproduce(&other_model, &mnist_test, &mnist_opts, &device).unwrap();
    assert!(other_rows.iter().all(|r| r.key.model_sha256 == other_model.sha256));
    assert_ne!(
        other_rows.iter().map(|r| r.mean_l2.to_bits()).collect::<Vec<_>>(),
        mnist_rows.iter().map(|r| r.mean_l2.to_bits()).collect::<Vec<_>>()
    );

    // A model that does not fit the data set is refused before anything runs.
    let err = reproduce(&cifar_model, &mnist_test, &mnist_opts, &device).unwrap_err();
    assert!(err.to_string().contains("c.safetensors"), "{err}");
}

#[test]
fn an_interrupted_row_continues_from_its_finished_batches() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (model, test) = mnist_setup(dir.path(), "m.safetensors");
    let opts = ReproduceOptions {
        attacks: vec![AttackKind::Ddn],
        table1_budgets: vec![],
        table2_budgets: vec![4],
        fig4_steps: 0,
        ..options(&out, DatasetName::Mnist)
    };
    reproduce(&model, &test, &opts, &device).unwrap();
    let row_path = row_file(&out, "table2-ddn-4.json");
    let read_row = || -> Row { serde_json::from_str(&std::fs::read_to_string(&row_path).unwrap()).unwrap() };
    let whole = read_row();
    assert_eq!(whole.segments.iter().map(|s| s.attacks).collect::<Vec<_>>(), vec![27]);

    // An interrupted run that saved its first batch of 10 attacks, with norms that a
    // recomputation would not give.
    std::fs::remove_file(&row_path).unwrap();
    let set = AttackSet::targeted(&test, DatasetName::Mnist.info().targets);
    let mut saved = CampaignCheckpoint::new(serde_json::to_value(&whole.key).unwrap(), &set);
    saved.start_segment("earlier".into(), "cpu".into(), "commit".into());
    saved.record(&CampaignResult {
        norms: vec![0.5; 10],
        success: vec![true; 10],
        adversarials: None,
        seconds: 1.0,
        recheck: Default::default(),
    });
    let partial = out.join("rows").join(".table2-ddn-4.json.part");
    saved.save(&partial).unwrap();

    reproduce(&model, &test, &opts, &device).unwrap();
    let row = read_row();
    assert!(!partial.exists(), "partial file left behind");
    assert_eq!(row.segments.iter().map(|s| s.attacks).collect::<Vec<_>>(), vec![10, 17]);
    assert_eq!(row.segments[0].device, "earlier");
    // The other 17 attacks, batched as the resumed run batched them.
    let rest = AttackSet {
        data: set.data.select(&(10..27).collect::<Vec<_>>()),
        targets: set.targets.as_ref().map(|t| t[10..].to_vec()),
    };
    let tail = attack_all(
        &model.model,
        &rest,
        &whole.key.spec,
        &opts.execution,
        &device,
        false,
        &mut NoObserver,
    )
    .unwrap();
    let norms: Vec<f64> = std::iter::repeat_n(0.5, 10)
        .chain(tail.norms.iter().map(|&n| n as f64))
        .filter(|n| n.is_finite())
        .collect();
    let mean = norms.iter().sum::<f64>() / norms.len() as f64;
    assert!((row.mean_l2 - mean).abs() < 1e-6, "{} vs {mean}", row.mean_l2);
    assert_eq!(
        row.success_rate,
        (10 + tail.success.iter().filter(|&&s| s).count()) as f64 / 27.0
    );

    // Partial results of another experiment are not mixed in: the row starts over.
    std::fs::remove_file(&row_path).unwrap();
    let mut other = saved.clone();
    other.run = serde_json::json!({"another": "experiment"});
    other.save(&partial).unwrap();
    reproduce(&model, &test, &opts, &device).unwrap();
    let again = read_row();
    assert_eq!(again.segments.iter().map(|s| s.attacks).collect::<Vec<_>>(), vec![27]);
    assert_eq!(again.mean_l2, whole.mean_l2);
    assert!(!partial.exists());
}
