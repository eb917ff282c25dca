//! The compute device, chosen at run time by `--device` (`flex`, `wgpu`, `vulkan:1`, `cuda:0`...).

use std::fmt;
use std::str::FromStr;

use burn::prelude::*;

use crate::error::{Error, Result};

pub mod cuda;

/// Which backend runs the tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The pure-Rust CPU backend (default).
    Flex,
    /// A GPU through wgpu, on whichever graphics API the machine offers (needs the `wgpu`
    /// cargo feature); on a machine without a GPU, a software Vulkan driver (lavapipe) serves.
    Wgpu,
    /// A GPU through wgpu, pinned to Vulkan with SPIR-V shaders (needs the `vulkan` feature).
    Vulkan,
    /// The CUDA backend (needs the `cuda` cargo feature).
    Cuda,
    /// burn's `ndarray` CPU backend (needs the `ndarray` cargo feature).
    Ndarray,
    /// LibTorch on the CPU through `tch` (needs the `tch` cargo feature and a libtorch).
    Libtorch,
}

impl Backend {
    const ALL: [Backend; 6] = [
        Backend::Flex,
        Backend::Wgpu,
        Backend::Vulkan,
        Backend::Cuda,
        Backend::Ndarray,
        Backend::Libtorch,
    ];

    /// The name `--device` takes.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Flex => "flex",
            Backend::Wgpu => "wgpu",
            Backend::Vulkan => "vulkan",
            Backend::Cuda => "cuda",
            Backend::Ndarray => "ndarray",
            Backend::Libtorch => "libtorch",
        }
    }

    /// Whether the backend computes on the CPU's cores (a software Vulkan driver behind `wgpu`
    /// counts as a GPU here: it is used through the GPU's code path).
    pub fn is_cpu(self) -> bool {
        matches!(self, Backend::Flex | Backend::Ndarray | Backend::Libtorch)
    }

    /// Whether a device index may follow the name.
    fn takes_index(self) -> bool {
        matches!(self, Backend::Wgpu | Backend::Vulkan | Backend::Cuda)
    }
}

/// A device as `--device` names it: a backend and, for GPU backends, which of the machine's
/// devices (`wgpu:1`: the second adapter wgpu lists; no index: the backend's default choice).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceChoice {
    backend: Backend,
    index: Option<usize>,
}

impl DeviceChoice {
    /// The default CPU device.
    pub const FLEX: DeviceChoice = DeviceChoice {
        backend: Backend::Flex,
        index: None,
    };

    /// `backend` with an optional device index.
    pub fn new(backend: Backend, index: Option<usize>) -> Result<Self> {
        if index.is_some() && !backend.takes_index() {
            return Err(Error::Invalid(format!("the {} device takes no index", backend.name())));
        }
        Ok(Self { backend, index })
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The device index, if one was given.
    pub fn index(&self) -> Option<usize> {
        self.index
    }

    /// The burn device, or a readable error when this build lacks the backend or the machine
    /// lacks the device.
    pub fn open(&self) -> Result<Device> {
        match self.backend {
            Backend::Flex => Ok(Device::flex()),
            Backend::Wgpu => wgpu_device(self.index, false),
            Backend::Vulkan => wgpu_device(self.index, true),
            Backend::Cuda => cuda_device(self.index),
            Backend::Ndarray => ndarray_device(),
            Backend::Libtorch => libtorch_device(),
        }
    }
}

impl Default for DeviceChoice {
    fn default() -> Self {
        Self::FLEX
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.index {
            Some(i) => write!(f, "{}:{i}", self.backend.name()),
            None => f.write_str(self.backend.name()),
        }
    }
}

impl FromStr for DeviceChoice {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let (name, index) = match s.split_once(':') {
            Some((name, index)) => {
                let index = index.parse::<usize>().map_err(|_| {
                    Error::Invalid(format!("`{s}`: the device index must be a number, as in `{name}:0`"))
                })?;
                (name, Some(index))
            }
            None => (s, None),
        };
        let backend = Backend::ALL
            .into_iter()
            .find(|b| b.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                let names: Vec<&str> = Backend::ALL.iter().map(|b| b.name()).collect();
                Error::Invalid(format!("unknown device `{s}`: one of {}", names.join(", ")))
            })?;
        Self::new(backend, index)
    }
}

impl serde::Serialize for DeviceChoice {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for DeviceChoice {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Makes burn's default device the CPU (`flex`) unless the user set `BURN_DEVICE`.
///
/// burn builds a few tensors on its default device: the optimiser state it restores from a
/// training checkpoint, for one, which it moves to the parameters' device at the next step.
/// Without `BURN_DEVICE` that default is the first GPU backend compiled in, CUDA in a `cuda`
/// build, whose loader panics on a machine without the NVIDIA driver; anu passes its chosen
/// device everywhere else, so the CPU is the safe default.
///
/// # Safety
/// Changes the process environment: call it before any other thread starts (first thing in
/// `main`), as `std::env::set_var` requires.
#[allow(unsafe_code)] // `std::env::set_var`, under the contract above
pub unsafe fn default_burn_device_to_cpu() {
    if std::env::var_os("BURN_DEVICE").is_none() {
        // SAFETY: the caller guarantees that no other thread runs yet.
        unsafe { std::env::set_var("BURN_DEVICE", "flex") };
    }
}

/// The name the device gives itself (`NVIDIA H100 PCIe`, `llvmpipe (LLVM 15.0.6, 256 bits)`),
/// or the backend's name for CPU backends, which report none.
pub fn describe(choice: DeviceChoice, device: &Device) -> String {
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    if !choice.backend.is_cpu()
        && let Some(identity) = device.identity()
    {
        return format!("{choice} ({})", identity.name);
    }
    let _ = device;
    match choice.backend {
        Backend::Flex => "flex (CPU)".to_string(),
        Backend::Ndarray => "ndarray (CPU)".to_string(),
        Backend::Libtorch => "libtorch (CPU)".to_string(),
        _ => choice.to_string(),
    }
}

#[cfg(feature = "wgpu")]
fn wgpu_device(index: Option<usize>, vulkan: bool) -> Result<Device> {
    use burn::tensor::{DeviceKind, DeviceType};

    #[cfg(feature = "vulkan")]
    let device_type = if vulkan { DeviceType::Vulkan } else { DeviceType::Wgpu };
    #[cfg(not(feature = "vulkan"))]
    let device_type = if vulkan {
        return Err(Error::Unavailable(
            "this build of anu has no Vulkan pinning: rebuild with `--features vulkan` (or use `--device wgpu`)".into(),
        ));
    } else {
        DeviceType::Wgpu
    };
    let found = Device::enumerate(device_type).into_vec();
    if found.is_empty() {
        return Err(Error::Unavailable(
            "wgpu finds no graphics adapter on this machine: install the GPU's Vulkan driver \
             (on a machine without a GPU, Mesa's software driver: `apt install mesa-vulkan-drivers libvulkan1`)"
                .into(),
        ));
    }
    match index {
        None if vulkan => {
            #[cfg(feature = "vulkan")]
            return Ok(Device::vulkan(DeviceKind::DefaultDevice));
            #[cfg(not(feature = "vulkan"))]
            unreachable!("refused above");
        }
        None => Ok(Device::wgpu(DeviceKind::DefaultDevice)),
        Some(i) => {
            let count = found.len();
            found.into_iter().nth(i).ok_or_else(|| {
                Error::Unavailable(format!(
                    "there is no graphics adapter {i}: wgpu lists {count} (numbered from 0)"
                ))
            })
        }
    }
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_device(_index: Option<usize>, _vulkan: bool) -> Result<Device> {
    Err(Error::Unavailable(
        "this build of anu has no GPU support through wgpu: rebuild with `--features wgpu` (or `vulkan`)".into(),
    ))
}

#[cfg(feature = "cuda")]
fn cuda_device(index: Option<usize>) -> Result<Device> {
    cuda::open(index)
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(_index: Option<usize>) -> Result<Device> {
    Err(Error::Unavailable(
        "this build of anu has no CUDA support: rebuild with `--features cuda`".into(),
    ))
}

// burn 0.22 deprecates its ndarray and tch backends; they stay here for comparison.
#[cfg(feature = "ndarray")]
#[allow(deprecated)]
fn ndarray_device() -> Result<Device> {
    Ok(Device::ndarray())
}

#[cfg(not(feature = "ndarray"))]
fn ndarray_device() -> Result<Device> {
    Err(Error::Unavailable(
        "this build of anu has no ndarray backend: rebuild with `--features ndarray`".into(),
    ))
}

#[cfg(feature = "tch")]
#[allow(deprecated)]
fn libtorch_device() -> Result<Device> {
    Ok(Device::libtorch())
}

#[cfg(not(feature = "tch"))]
fn libtorch_device() -> Result<Device> {
    Err(Error::Unavailable(
        "this build of anu has no LibTorch backend: rebuild with `--features tch`".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_parse_and_print_back() {
        for s in [
            "flex", "wgpu", "wgpu:1", "vulkan:0", "cuda", "cuda:2", "ndarray", "libtorch",
        ] {
            let choice: DeviceChoice = s.parse().unwrap();
            assert_eq!(choice.to_string(), s);
            let json = serde_json::to_string(&choice).unwrap();
            assert_eq!(serde_json::from_str::<DeviceChoice>(&json).unwrap(), choice);
        }
        assert_eq!("Vulkan:3".parse::<DeviceChoice>().unwrap().index(), Some(3));
        assert_eq!("flex".parse::<DeviceChoice>().unwrap(), DeviceChoice::default());
    }

    #[test]
    fn bad_device_names_are_refused_with_the_reason() {
        let err = |s: &str| s.parse::<DeviceChoice>().unwrap_err().to_string();
        assert!(err("tpu").contains("one of flex, wgpu"), "{}", err("tpu"));
        assert!(err("flex:0").contains("takes no index"));
        assert!(err("wgpu:x").contains("must be a number"));
        assert!(err("cuda:-1").contains("must be a number"));
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn a_backend_missing_from_the_build_says_which_feature_brings_it() {
        let err = "cuda".parse::<DeviceChoice>().unwrap().open().unwrap_err().to_string();
        assert!(err.contains("--features cuda"), "{err}");
    }
}
