//! The compute device, chosen at run time by `--device`.

use burn::prelude::*;

use crate::error::{Error, Result};

/// Which backend runs the tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    /// The pure-Rust CPU backend (default).
    Flex,
    /// The CUDA backend (needs the `cuda` cargo feature).
    Cuda,
    /// burn's `ndarray` CPU backend (needs the `ndarray` cargo feature).
    Ndarray,
    /// LibTorch on the CPU through `tch` (needs the `tch` cargo feature and a libtorch).
    Libtorch,
}

/// The device for `kind`, or a readable error when this build lacks it.
pub fn device(kind: DeviceKind) -> Result<Device> {
    match kind {
        DeviceKind::Flex => Ok(Device::flex()),
        #[cfg(feature = "cuda")]
        DeviceKind::Cuda => Ok(Device::cuda(0)),
        #[cfg(not(feature = "cuda"))]
        DeviceKind::Cuda => Err(Error::Unavailable(
            "this build of anu has no CUDA support: rebuild with `--features cuda`".into(),
        )),
        // burn 0.22 deprecates its ndarray and tch backends; they stay here for comparison.
        #[cfg(feature = "ndarray")]
        #[allow(deprecated)]
        DeviceKind::Ndarray => Ok(Device::ndarray()),
        #[cfg(not(feature = "ndarray"))]
        DeviceKind::Ndarray => Err(Error::Unavailable(
            "this build of anu has no ndarray backend: rebuild with `--features ndarray`".into(),
        )),
        #[cfg(feature = "tch")]
        #[allow(deprecated)]
        DeviceKind::Libtorch => Ok(Device::libtorch()),
        #[cfg(not(feature = "tch"))]
        DeviceKind::Libtorch => Err(Error::Unavailable(
            "this build of anu has no LibTorch backend: rebuild with `--features tch`".into(),
        )),
    }
}
