//! The compute device, chosen at run time by `--device`.

use burn::prelude::*;

/// Which backend runs the tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceKind {
    /// The pure-Rust CPU backend (default).
    Flex,
    /// The CUDA backend (needs the `cuda` cargo feature).
    Cuda,
}

/// The device for `kind`, or a readable error when this build lacks it.
pub fn device(kind: DeviceKind) -> Result<Device, String> {
    match kind {
        DeviceKind::Flex => Ok(Device::flex()),
        #[cfg(feature = "cuda")]
        DeviceKind::Cuda => Ok(Device::cuda(0)),
        #[cfg(not(feature = "cuda"))]
        DeviceKind::Cuda => Err("this build of anu has no CUDA support: rebuild with `--features cuda`".into()),
    }
}

/// Images per forward/backward pass inside an attack batch for this backend: small chunks
/// keep a CPU's caches warm (see `anu bench`); a GPU wants the whole batch at once.
pub fn pass_chunk(kind: DeviceKind) -> usize {
    match kind {
        DeviceKind::Flex => crate::attack::config::CPU_PASS_CHUNK,
        DeviceKind::Cuda => 0,
    }
}
