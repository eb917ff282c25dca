//! The names of `cubecl-llvm` that `cubecl-cuda` 0.11 refers to, without LLVM.
//!
//! `cubecl-cuda` selects its kernel compiler at run time from its `cpp` feature: with it (as in
//! `anu`'s `cuda` build) every kernel goes to CUDA C++ and NVRTC, and the LLVM path is never
//! taken. The LLVM path still has to compile, so this crate gives it types of the same shape;
//! its compiler answers every kernel with [`CompilationError::Generic`], naming the reason, rather
//! than producing code.

use cubecl_core::prelude::KernelDefinition;
use cubecl_server::compiler::{CompilationError, Compiler};
use cubecl_server::kernel::BufferIOAttr;

/// The message every refused kernel carries.
pub const ABSENT: &str = "this build of anu has no LLVM kernel compiler (cubecl-llvm is replaced \
     by a stand-in); kernels compile through CUDA C++ and NVRTC: build with cubecl-cuda's `cpp` \
     feature, as `anu`'s `cuda` feature does";

/// Where the LLVM compiler would emit code.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LlvmTarget {
    /// The host CPU.
    #[default]
    Cpu,
    /// AMD GPUs.
    #[cfg(feature = "amdgpu")]
    AmdGpu,
    /// NVIDIA GPUs (PTX).
    #[cfg(feature = "nvptx")]
    Nvptx,
}

/// Options of the LLVM compiler; only their shape matters here.
#[derive(Clone, Debug, Default)]
pub struct PlironOptions {
    /// AMD architecture (unused).
    pub arch: Option<String>,
    /// NVIDIA architecture (unused).
    #[cfg(feature = "nvptx")]
    pub sm_arch: Option<cubecl_core::ir::nvidia::SmArch>,
    /// PTX version to emit (unused).
    #[cfg(feature = "nvptx")]
    pub ptx_version: Option<nvptx::ptx_version::PtxVersion>,
    /// Scalars in the parameter block (unused).
    pub grid_constants: bool,
}

/// A PTX module; never produced by this crate.
#[cfg(feature = "nvptx")]
#[derive(Clone, Debug)]
pub struct NvptxModule {
    /// NUL-terminated PTX.
    pub ptx: Vec<core::ffi::c_char>,
    /// Kernel entry point.
    pub entrypoint: String,
    /// Text for logs and cache keys.
    pub ir: String,
    /// Dynamic shared memory per launch, in bytes.
    pub shared_memory_size: usize,
    /// Buffer access modes in binding order.
    pub io: Vec<BufferIOAttr>,
}

/// What the LLVM compiler produces; never produced by this crate.
#[derive(Clone, Debug)]
pub enum PlironArtifact {
    /// A PTX module.
    #[cfg(feature = "nvptx")]
    NvptxCode(NvptxModule),
    /// Stands for the targets this crate does not name.
    Absent,
}

impl core::fmt::Display for PlironArtifact {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            #[cfg(feature = "nvptx")]
            PlironArtifact::NvptxCode(module) => f.write_str(&module.ir),
            PlironArtifact::Absent => f.write_str("(no LLVM artifact)"),
        }
    }
}

/// The LLVM compiler's place: refuses every kernel (see the crate's documentation).
#[derive(Clone, Debug, Default)]
pub struct PlironCompiler {
    /// The target it was configured for.
    pub target: LlvmTarget,
}

impl Compiler for PlironCompiler {
    type Representation = PlironArtifact;
    type CompilationOptions = PlironOptions;

    fn compile(
        &mut self,
        _kernel: KernelDefinition,
        _options: &Self::CompilationOptions,
    ) -> Result<Self::Representation, CompilationError> {
        Err(CompilationError::Generic {
            reason: ABSENT.to_string(),
            backtrace: cubecl_core::environment::backtrace::BackTrace::capture(),
        })
    }

    fn extension(&self) -> &'static str {
        "ll"
    }

    fn lang_tag(&self) -> &'static str {
        "llvm"
    }
}

/// What `cubecl-cuda` refers to under `cubecl_llvm::shared`.
pub mod shared {
    /// Device features narrowed for the LLVM backend.
    pub mod lowered_features {
        use cubecl_core::ir::DeviceProperties;

        /// The GPU target whose features would be narrowed.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum GpuTarget {
            /// NVIDIA GPUs.
            #[cfg(feature = "nvptx")]
            Nvptx,
            /// AMD GPUs.
            #[cfg(feature = "amdgpu")]
            AmdGpu,
        }

        /// Leaves `props` as they are: no kernel reaches the LLVM backend in this build, and
        /// the NVRTC backend honours every feature the runtime advertises.
        pub fn restrict_features(_props: &mut DeviceProperties, _target: GpuTarget) {}
    }
}

/// What `cubecl-cuda` refers to under `cubecl_llvm::nvptx`.
#[cfg(feature = "nvptx")]
pub mod nvptx {
    /// The PTX version the LLVM backend would emit.
    pub mod ptx_version {
        use core::fmt;

        /// A PTX ISA version (8.7 is `87`). This build emits no PTX, so none is ever chosen.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub struct PtxVersion(u32);

        impl PtxVersion {
            /// `None`: this build has no LLVM backend to emit PTX for the driver `_driver`.
            pub fn for_driver(_driver: i32) -> Option<Self> {
                None
            }
        }

        impl fmt::Display for PtxVersion {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "ptx{}", self.0)
            }
        }
    }
}
