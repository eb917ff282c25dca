//! The CUDA build on a machine without the NVIDIA driver or NVRTC (CI's): `--device cuda` must
//! end with an error that says what to install, not with the panic inside cudarc that burn's CUDA
//! runtime would hit. On a machine that has both libraries there is nothing to check.
#![cfg(feature = "cuda")]

use std::process::Command;

use anu::device::cuda::{libraries_present, missing_library_message};

#[test]
fn bench_on_cuda_without_the_driver_says_what_to_install() {
    let Some(message) = missing_library_message(libraries_present()) else {
        eprintln!("this machine has the NVIDIA driver and NVRTC; nothing to check");
        return;
    };
    let out = Command::new(env!("CARGO_BIN_EXE_anu"))
        .args(["bench", "--device", "cuda"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "anu bench --device cuda succeeded: {stderr}");
    assert!(
        stderr.contains(&message),
        "the error does not say what to install: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
