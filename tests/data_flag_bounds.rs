//! Flags whose values would make the process allocate far more than the machine has (a batch
//! of a million images, a billion-point eps grid) are refused with the flag named, before the
//! work, instead of ending in an allocator abort.

mod common;

use std::process::Command;

/// Runs `anu` with `args` and the data folder; returns whether it succeeded, its exit code and
/// what it printed on stderr.
fn anu(args: &[&str]) -> (bool, Option<i32>, String) {
    let data = common::data_dir().to_string_lossy().into_owned();
    let out = Command::new(env!("CARGO_BIN_EXE_anu"))
        .args(args)
        .args(["--data-dir", &data])
        .output()
        .unwrap();
    (
        out.status.success(),
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn batches_beyond_the_machine_are_refused_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("b.json").to_string_lossy().into_owned();
    let model = common::mnist_model_path().to_string_lossy().into_owned();
    let out = dir.path().join("m.safetensors").to_string_lossy().into_owned();
    let cases: [(&[&str], &str); 3] = [
        (
            &[
                "bench",
                "--model-file",
                &model,
                "--batch-sizes",
                "100000000",
                "--json",
                &json,
            ],
            "--batch-sizes 100000000",
        ),
        (
            &["train", "--batch-size", "1000000000", "--epochs", "1", "--out", &out],
            "--batch-size 60000",
        ),
        (
            &[
                "robustness",
                "--model-file",
                &model,
                "--points",
                "1000000000",
                "--out",
                &out,
            ],
            "1000000000",
        ),
    ];
    // All 60 000 MNIST images in one training step need about 48 GB: refused where the
    // machine has less (a machine with more would start training).
    let small_machine = anu::machine::total_memory_bytes().is_some_and(|m| m < 40 << 30);
    for (args, named) in cases {
        if args[0] == "train" && !small_machine {
            continue;
        }
        let (ok, code, stderr) = anu(args);
        assert!(!ok && code == Some(1), "anu {args:?}: exit {code:?}: {stderr}");
        assert!(stderr.contains(named), "anu {args:?}: {stderr}");
    }
    assert!(common::file_names(dir.path()).is_empty());
}
