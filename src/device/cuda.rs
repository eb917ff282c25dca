//! Opening a CUDA device, after asking whether the machine has what burn's CUDA runtime loads.
//!
//! The runtime (cubecl-cuda, through cudarc) opens the NVIDIA driver library (`libcuda.so.1` on
//! Linux, `nvcuda.dll` on Windows) and NVRTC (`libnvrtc.so`), which compiles the kernels, only
//! when the first kernel runs, and panics when either is missing. `anu` looks for both before it
//! starts the runtime, so a machine without them gets an error that says what to install.

/// Which of the run-time libraries of the CUDA backend this machine can load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CudaLibraries {
    /// The NVIDIA driver's CUDA library (`libcuda.so.1`), which comes with the GPU driver.
    pub driver: bool,
    /// NVRTC (`libnvrtc.so`), CUDA's run-time compiler, which comes with the CUDA toolkit or pip.
    pub nvrtc: bool,
}

/// What to install, when a library of [`CudaLibraries`] is missing; `None` when both are there.
pub fn missing_library_message(found: CudaLibraries) -> Option<String> {
    const DRIVER: &str = "the NVIDIA driver's CUDA library (libcuda.so.1 on Linux, nvcuda.dll on \
         Windows) is not found: install the NVIDIA GPU driver (`nvidia-smi` shows it working); \
         on a machine without an NVIDIA GPU use `--device wgpu` or the CPU";
    const NVRTC: &str = "CUDA's run-time compiler NVRTC (libnvrtc.so) is not found: install it \
         with the CUDA toolkit, Debian/Ubuntu's `libnvrtc12` (or the `cuda-nvrtc` package of \
         NVIDIA's repository), or `pip install nvidia-cuda-nvrtc-cu12`, and put the folder that \
         holds libnvrtc.so on LD_LIBRARY_PATH";
    match (found.driver, found.nvrtc) {
        (true, true) => None,
        (false, true) => Some(DRIVER.to_string()),
        (true, false) => Some(NVRTC.to_string()),
        (false, false) => Some(format!("{DRIVER}; and {NVRTC}")),
    }
}

/// Device `index` (default 0) of the CUDA backend, or a clear error when the machine has no
/// NVIDIA driver, no NVRTC, no CUDA GPU or no GPU with that number.
#[cfg(feature = "cuda")]
pub(super) fn open(index: Option<usize>) -> crate::error::Result<burn::prelude::Device> {
    use crate::error::Error;
    use cudarc::driver::result as driver;

    if let Some(message) = missing_library_message(libraries_present()) {
        return Err(Error::Unavailable(message));
    }
    driver::init().map_err(|e| {
        Error::Unavailable(format!(
            "the NVIDIA driver could not start CUDA ({e}): check that `nvidia-smi` lists the GPU"
        ))
    })?;
    let count = driver::device::get_count()
        .map_err(|e| Error::Unavailable(format!("the NVIDIA driver cannot count its GPUs ({e})")))?;
    let count = usize::try_from(count).unwrap_or(0);
    let index = index.unwrap_or(0);
    if count == 0 {
        return Err(Error::Unavailable(
            "the NVIDIA driver finds no CUDA GPU on this machine".into(),
        ));
    }
    if index >= count {
        return Err(Error::Unavailable(format!(
            "there is no CUDA GPU {index}: the driver lists {count} (numbered from 0)"
        )));
    }
    Ok(burn::prelude::Device::cuda(index))
}

/// Whether the driver library and NVRTC can be loaded, found by the names cudarc itself tries.
#[cfg(feature = "cuda")]
#[allow(unsafe_code)] // cudarc's library probes, explained below
pub fn libraries_present() -> CudaLibraries {
    // SAFETY: both functions only try to open shared libraries by name and close them again; the
    // bindings mark them `unsafe` because loading a library runs its initialisers, which for the
    // NVIDIA driver and NVRTC are the vendor's own and expected by cudarc.
    unsafe {
        CudaLibraries {
            driver: cudarc::driver::sys::is_culib_present(),
            nvrtc: cudarc::nvrtc::sys::is_culib_present(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_missing_library_is_named_with_what_to_install() {
        let all = CudaLibraries {
            driver: true,
            nvrtc: true,
        };
        assert_eq!(missing_library_message(all), None);
        let no_driver = missing_library_message(CudaLibraries {
            driver: false,
            nvrtc: true,
        })
        .unwrap();
        assert!(no_driver.contains("libcuda.so.1") && no_driver.contains("NVIDIA GPU driver"));
        assert!(!no_driver.contains("libnvrtc"), "{no_driver}");
        let no_nvrtc = missing_library_message(CudaLibraries {
            driver: true,
            nvrtc: false,
        })
        .unwrap();
        assert!(no_nvrtc.contains("libnvrtc.so") && no_nvrtc.contains("LD_LIBRARY_PATH"));
        assert!(!no_nvrtc.contains("libcuda"), "{no_nvrtc}");
        let neither = missing_library_message(CudaLibraries {
            driver: false,
            nvrtc: false,
        })
        .unwrap();
        assert!(neither.contains("libcuda.so.1") && neither.contains("libnvrtc.so"));
    }

    /// On a machine without the NVIDIA driver (CI's), `--device cuda` is refused with the message
    /// instead of the panic inside cudarc that the runtime would hit.
    #[cfg(feature = "cuda")]
    #[test]
    fn a_machine_without_the_driver_gets_the_message_not_a_panic() {
        let found = libraries_present();
        let opened = "cuda".parse::<crate::device::DeviceChoice>().unwrap().open();
        match missing_library_message(found) {
            Some(message) => {
                let err = opened.expect_err("opening must fail without the libraries").to_string();
                assert!(err.contains(&message), "{err}");
            }
            None => eprintln!("this machine has the NVIDIA driver and NVRTC; nothing to check"),
        }
    }
}
