//! Every file anu writes goes through one safe path: only regular files are replaced (a
//! symbolic link, a folder or a FIFO at the target is refused and left alone), the temporary
//! file is created exclusively under an unpredictable name and never left behind, figures are
//! replaced whole, and each command checks its output paths before its long work. These tests
//! make their own files in temporary folders; they need no data folder.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use anu::figures::{Series, line_chart};
use anu::fsutil::{check_output_dir, check_output_file, write_atomic, write_json};

/// A small value to write as JSON.
fn value() -> serde_json::Value {
    serde_json::json!({"mean_l2": 1.25, "steps": 100})
}

/// Asserts that `text` (an error message) names `path`.
fn assert_names(text: &str, path: &Path) {
    assert!(
        text.contains(&*path.to_string_lossy()),
        "the error does not name {}: {text}",
        path.display()
    );
}

#[cfg(unix)]
#[test]
fn a_symlink_at_the_target_is_refused_and_the_file_it_points_to_is_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim.txt");
    std::fs::write(&victim, b"precious").unwrap();
    let target = dir.path().join("out.json");
    std::os::unix::fs::symlink(&victim, &target).unwrap();

    let err = write_json(&target, &value()).unwrap_err().to_string();
    assert_names(&err, &target);
    assert!(err.contains("symbolic link"), "{err}");
    assert_names(&check_output_file(&target).unwrap_err().to_string(), &target);

    assert!(std::fs::symlink_metadata(&target).unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert_eq!(common::file_names(dir.path()), ["out.json", "victim.txt"]);
}

#[test]
fn a_folder_at_the_target_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("out.json");
    std::fs::create_dir(&target).unwrap();

    let err = write_json(&target, &value()).unwrap_err().to_string();
    assert_names(&err, &target);
    assert!(err.contains("not a regular file"), "{err}");
    assert!(check_output_file(&target).is_err());
    assert!(target.is_dir());
    assert_eq!(
        common::file_names(dir.path()),
        ["out.json"],
        "nothing else is left in the folder"
    );
}

#[cfg(unix)]
#[test]
fn a_fifo_at_the_target_is_refused_and_not_replaced() {
    use std::os::unix::fs::FileTypeExt;
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("out.json");
    match Command::new("mkfifo").arg(&target).status() {
        Ok(status) if status.success() => {}
        other => {
            eprintln!("skipped: mkfifo is not available here ({other:?})");
            return;
        }
    }

    let err = write_atomic(&target, b"{}").unwrap_err().to_string();
    assert_names(&err, &target);
    assert!(err.contains("FIFO"), "{err}");
    assert!(check_output_file(&target).is_err());

    assert!(std::fs::symlink_metadata(&target).unwrap().file_type().is_fifo());
    assert_eq!(common::file_names(dir.path()), ["out.json"]);
}

#[test]
fn a_folder_that_cannot_hold_the_output_gives_an_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file.txt");
    std::fs::write(&file, b"text").unwrap();
    let target = file.join("out.json");

    let err = check_output_file(&target).unwrap_err().to_string();
    assert_names(&err, &target);
    assert!(err.contains("not a folder"), "{err}");
    let err = check_output_dir(&file.join("results")).unwrap_err().to_string();
    assert!(err.contains("not a folder"), "{err}");
    assert_names(&write_json(&target, &value()).unwrap_err().to_string(), &file);
    assert_eq!(std::fs::read(&file).unwrap(), b"text");
}

#[cfg(unix)]
#[test]
fn a_read_only_folder_gives_an_error_naming_the_path() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let ro = dir.path().join("read-only");
    std::fs::create_dir(&ro).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    let target = ro.join("out.json");

    let probe = ro.join("probe");
    let writable_anyway = std::fs::write(&probe, b"").is_ok();
    let result = check_output_file(&target);
    let sub_result = check_output_dir(&ro.join("sub"));
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();

    if writable_anyway {
        std::fs::remove_file(&probe).unwrap();
        eprintln!("permission bits do not stop writes here (running as root): only checking that the check passes");
        result.unwrap();
        sub_result.unwrap();
    } else {
        let err = result.unwrap_err().to_string();
        assert_names(&err, &target);
        assert!(err.contains("cannot create files in the folder"), "{err}");
        assert_names(&sub_result.unwrap_err().to_string(), &ro);
    }
    assert!(
        common::file_names(&ro).is_empty(),
        "the check leaves nothing: {:?}",
        common::file_names(&ro)
    );
}

#[test]
fn a_failed_write_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("out.json");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("inside.txt"), b"x").unwrap();
    let good = dir.path().join("good.json");
    write_json(&good, &value()).unwrap();

    for _ in 0..3 {
        assert!(write_atomic(&target, b"{}").is_err());
        assert!(write_json(&target, &value()).is_err());
    }
    assert_eq!(common::file_names(dir.path()), ["good.json", "out.json"]);
    assert_eq!(common::file_names(&target), ["inside.txt"]);
}

#[cfg(unix)]
#[test]
fn a_planted_symlink_at_a_guessable_temporary_name_does_not_touch_its_target() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim.txt");
    std::fs::write(&victim, b"precious").unwrap();
    let planted = dir.path().join(format!(".x.json.{}.tmp", std::process::id()));
    std::os::unix::fs::symlink(&victim, &planted).unwrap();
    let target = dir.path().join("x.json");

    write_json(&target, &value()).unwrap();

    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    let written: serde_json::Value = serde_json::from_slice(&std::fs::read(&target).unwrap()).unwrap();
    assert_eq!(written, value());
    assert!(std::fs::symlink_metadata(&target).unwrap().file_type().is_file());
    assert!(std::fs::symlink_metadata(&planted).unwrap().file_type().is_symlink());
}

/// A two-line chart.
fn chart_series() -> Vec<Series> {
    vec![
        Series {
            name: "DDN".into(),
            points: (1..=20).map(|k| (k as f64, 2.0 / k as f64)).collect(),
        },
        Series {
            name: "ANU".into(),
            points: (1..=20).map(|k| (k as f64, 1.5 / k as f64)).collect(),
        },
    ]
}

/// Writes a small valid PNG (2 x 2, one colour) to `path`.
fn write_good_png(path: &Path) {
    image::RgbImage::from_pixel(2, 2, image::Rgb([10, 20, 30]))
        .save_with_format(path, image::ImageFormat::Png)
        .unwrap();
}

#[test]
fn a_figure_replaces_an_existing_png_only_with_a_complete_one() {
    let dir = tempfile::tempdir().unwrap();
    let fig = dir.path().join("fig3.png");
    write_good_png(&fig);
    // A second name for the old file: writing the figure in place would change it too.
    let old = dir.path().join("old.png");
    std::fs::hard_link(&fig, &old).unwrap();

    line_chart(&fig, "Figure 3", "iteration", "norm", &chart_series()).unwrap();

    let new = image::open(&fig).unwrap().to_rgb8();
    assert_eq!(new.dimensions(), (800, 560));
    assert!(new.pixels().any(|p| p.0 != [255, 255, 255]), "the chart is drawn");
    let kept = image::open(&old).unwrap().to_rgb8();
    assert_eq!(kept.dimensions(), (2, 2), "the old file was never overwritten in place");
    assert_eq!(kept.get_pixel(0, 0).0, [10, 20, 30]);
    assert_eq!(common::file_names(dir.path()), ["fig3.png", "old.png"]);
}

#[cfg(unix)]
#[test]
fn a_figure_is_not_written_through_a_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim.png");
    write_good_png(&victim);
    let before = std::fs::read(&victim).unwrap();
    let fig = dir.path().join("fig5.png");
    std::os::unix::fs::symlink(&victim, &fig).unwrap();

    let err = line_chart(&fig, "Figure 5", "eps", "accuracy", &chart_series())
        .unwrap_err()
        .to_string();
    assert_names(&err, &fig);
    assert_eq!(std::fs::read(&victim).unwrap(), before);
    assert_eq!(common::file_names(dir.path()), ["fig5.png", "victim.png"]);
}

/// Runs `anu` with `args`; returns whether it succeeded and what it printed on stderr.
fn anu(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_anu")).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn every_command_checks_its_output_paths_before_its_work() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file.txt");
    std::fs::write(&file, b"text").unwrap();
    let path = |p: PathBuf| p.to_string_lossy().into_owned();
    let (out, out_json) = (path(file.join("out")), path(file.join("out.json")));
    let missing = path(dir.path().join("missing.safetensors"));
    let weights = path(dir.path().join("m.safetensors"));
    let data = path(dir.path().join("no-data"));
    let commands: [&[&str]; 6] = [
        &["attack", "--model-file", &missing, "--json", &out_json],
        &["bench", "--model-file", &missing, "--json", &out_json],
        &["reproduce", "--model-file", &missing, "--out", &out],
        &["robustness", "--model-file", &missing, "--out", &out],
        &["train", "--out", &out_json],
        &["train", "--out", &weights, "--log-json", &out_json],
    ];
    for args in commands {
        let args = [args, &["--data-dir", &data]].concat();
        let (ok, stderr) = anu(&args);
        assert!(!ok, "anu {args:?} succeeded");
        assert!(stderr.contains("not a folder"), "anu {args:?}: {stderr}");
        assert_names(&stderr, &file);
        assert!(
            !stderr.contains("missing.safetensors"),
            "anu {args:?} read the model first: {stderr}"
        );
    }
    assert_eq!(std::fs::read(&file).unwrap(), b"text");
    assert_eq!(common::file_names(dir.path()), ["file.txt"]);
}
