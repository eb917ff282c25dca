//! A tiny reproduction run writes every table and figure, and a rerun reuses saved rows.

mod common;

use anu::data::DatasetName;
use anu::models::weights;
use anu::reproduce::{ReproduceOptions, reproduce};
use burn::prelude::*;

#[test]
fn tiny_reproduction_writes_tables_and_figures_and_resumes() {
    let device = Device::flex();
    let model = weights::load(&common::mnist_model_path(), &device).unwrap().model;
    let test = common::mnist_test(3);
    let dir = tempfile::tempdir().unwrap();
    let options = ReproduceOptions {
        dataset: DatasetName::Mnist,
        out: dir.path().to_path_buf(),
        table1_budgets: vec![4, 8],
        table2_budgets: vec![4],
        fig4_steps: 6,
        force: false,
        batch_size: 10,
        pass_chunk: 4,
    };
    let rows = reproduce(&model, &test, &options, &device).unwrap();
    assert_eq!(rows.len(), 2 * 2 + 2);
    for name in [
        "table1.md",
        "table1.json",
        "table1.csv",
        "table2.md",
        "table2.json",
        "table2.csv",
        "fig3.png",
        "fig4.png",
    ] {
        let path = dir.path().join(name);
        assert!(path.metadata().map(|m| m.len() > 0).unwrap_or(false), "{name} missing");
    }
    let t2: Vec<anu::reproduce::Row> =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("table2.json")).unwrap()).unwrap();
    assert!(t2.iter().all(|r| r.n_attacks == 27 && r.n_images == 3));
    let md = std::fs::read_to_string(dir.path().join("table1.md")).unwrap();
    assert!(md.contains("| ANU | 8 |") && md.contains("| DDN | 4 |"), "{md}");

    // A rerun finds every row saved and returns them unchanged (timings included).
    let again = reproduce(&model, &test, &options, &device).unwrap();
    let key = |r: &anu::reproduce::Row| {
        (
            r.attack.clone(),
            r.budget,
            r.seconds,
            r.mean_l2.to_bits(),
            r.median_l2.to_bits(),
        )
    };
    assert_eq!(
        rows.iter().map(key).collect::<Vec<_>>(),
        again.iter().map(key).collect::<Vec<_>>()
    );
    // --force recomputes (timings differ in the last digits).
    let forced = reproduce(&model, &test, &ReproduceOptions { force: true, ..options }, &device).unwrap();
    assert_eq!(forced.len(), rows.len());
    assert!(
        forced
            .iter()
            .zip(&rows)
            .all(|(a, b)| a.mean_l2.to_bits() == b.mean_l2.to_bits()),
        "attacks are deterministic"
    );
}
