//! `anu reproduce` on a small random model and made-up images (no data folder): it writes
//! every table and figure, reuses a saved row only for exactly the same experiment, recomputes
//! under --force, and reports and recomputes damaged rows.

mod common;

use std::path::Path;

use anu::attack::{AttackKind, Execution};
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
    }
}

fn setup(dir: &Path, name: &str, arch: Architecture, seed: u64, dataset: DatasetName) -> (LoadedModel, Dataset) {
    let model = common::saved_random_model(dir, name, arch, seed);
    let test = common::synthetic(dataset, 3, &model.model, seed + 100);
    (model, test)
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
    let (model, test) = setup(
        dir.path(),
        "m.safetensors",
        Architecture::MnistCnn,
        1,
        DatasetName::Mnist,
    );
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
    let (mnist_model, mnist_test) = setup(
        dir.path(),
        "a.safetensors",
        Architecture::MnistCnn,
        1,
        DatasetName::Mnist,
    );
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
