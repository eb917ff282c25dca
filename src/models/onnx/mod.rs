//! Image classifiers exported to ONNX, loaded at run time: the file is decoded ([`proto`], nodes
//! named as the file names them), compiled into a list of operations ([`graph`], with the
//! parts that do not depend on the images computed once, [`host`]) and run with burn tensor
//! operations ([`eval`]) on the model's device, so attacks get input gradients from burn's
//! autodiff as for the built-in networks. Weights are prepared once, when the file is read (batch
//! norms folded into the convolutions before them, constants transposed and shaped for their
//! use), and held as the model's parameters.
//!
//! Attacks work on [0,1] images: a per-channel normalisation (`--mean`, `--std`) can be put in
//! front of the graph. A final Softmax is left out (attacks need logits).

pub mod eval;
pub mod graph;
pub mod host;
pub mod precheck;
pub mod proto;

use std::path::Path;
use std::sync::Arc;

use burn::module::Param;
use burn::prelude::*;

use super::{InputSpec, ModelError};
pub use graph::OnnxError;
use graph::{Compiler, Program};

/// Most values (C x H x W) of one input image of a graph: 4M, e.g. 3 x 1182 x 1182. The graph
/// is run once on such images when it is loaded, so a file of a few bytes that declares a huge
/// input is refused here rather than by the allocator.
pub const MAX_INPUT_ELEMENTS: usize = 4 << 20;

/// Per-channel normalisation of [0,1] images, `(x - mean) / std`, put in front of a graph.
#[derive(Clone, Debug, PartialEq)]
pub struct Normalization {
    /// Mean per channel.
    pub mean: Vec<f32>,
    /// Standard deviation per channel (positive).
    pub std: Vec<f32>,
}

/// What a loaded graph takes and costs.
#[derive(Clone, Debug)]
pub struct GraphInfo {
    /// Images and classes.
    pub spec: InputSpec,
    /// Multiply-adds of the convolutions and matrix products of one forward pass on one image.
    pub macs: u64,
}

/// A classifier read from an ONNX file (see the module docs).
#[derive(Module, Debug)]
pub struct OnnxModel {
    /// Convolution kernels.
    kernels: Vec<Param<Tensor<4>>>,
    /// Linear weights, `[in, out]`.
    matrices: Vec<Param<Tensor<2>>>,
    /// Convolution and linear biases.
    biases: Vec<Param<Tensor<1>>>,
    /// Other constants, at the rank of the values they combine with.
    consts: Vec<eval::Constant>,
    /// Mean subtracted from the images, `[1, C, 1, 1]`.
    mean: Option<Param<Tensor<4>>>,
    /// Reciprocal of the standard deviation the images are then multiplied by, `[1, C, 1, 1]`.
    inv_std: Option<Param<Tensor<4>>>,
    /// The operations.
    #[module(skip)]
    program: Arc<Program>,
    /// Input spec and cost.
    #[module(skip)]
    info: Arc<GraphInfo>,
}

impl OnnxModel {
    /// The images and classes the model takes.
    pub fn input_spec(&self) -> InputSpec {
        self.info.spec
    }

    /// Multiply-adds of one forward pass on one image (convolutions and matrix products).
    pub fn forward_macs(&self) -> u64 {
        self.info.macs
    }

    /// Whether the file's graph ended in a Softmax that was left out.
    pub fn stripped_softmax(&self) -> bool {
        self.program.stripped_softmax
    }

    /// Logits `[B, classes]` of images `[B, C, H, W]` in [0,1], or an error naming the node
    /// that does not fit. The graph was run on two images of this size when it was loaded, so
    /// only a graph whose shapes depend on the batch size can fail here (one exported for a
    /// fixed batch, say).
    pub fn try_forward(&self, images: Tensor<4>) -> Result<Tensor<2>, OnnxError> {
        self.run(images).map(|(logits, _)| logits)
    }

    fn run(&self, images: Tensor<4>) -> Result<(Tensor<2>, u64), OnnxError> {
        let x = match (&self.mean, &self.inv_std) {
            (Some(mean), Some(inv_std)) => (images - mean.val()) * inv_std.val(),
            _ => images,
        };
        let tensors = eval::Tensors {
            kernels: &self.kernels,
            matrices: &self.matrices,
            biases: &self.biases,
            consts: &self.consts,
        };
        let (out, macs) = eval::run(&self.program, &tensors, x).map_err(|e| OnnxError::Run {
            node: e.node,
            reason: e.reason,
        })?;
        Ok((eval::logits(out).map_err(OnnxError::Interface)?, macs))
    }
}

use super::format::format_err;

/// Reads an ONNX file into a model on `device`, with `normalization` in front of its graph.
/// Every operator is checked before anything runs (an unsupported one is reported by name and
/// node); then the graph is run once on two blank images to check that its shapes fit and to
/// learn its number of classes. Notes (a Softmax left out) go to stderr. Returns the model and
/// the SHA-256 of the file's bytes, read once for the checks of [`precheck`] and the digest.
pub fn load(
    path: &Path,
    normalization: Option<&Normalization>,
    device: &Device,
) -> Result<(OnnxModel, String), ModelError> {
    let bytes =
        crate::fsutil::read_regular(path, super::weights::MAX_WEIGHT_FILE_BYTES).map_err(|e| ModelError::Io {
            path: path.to_path_buf(),
            action: "cannot read",
            source: e,
        })?;
    let sha256 = crate::fsutil::sha256_hex(&bytes);
    let graph = proto::read(path, &bytes).map_err(|e| format_err(path, e))?;
    drop(bytes);
    let (program, weights) = Compiler::compile(&graph).map_err(|e| format_err(path, e.to_string()))?;
    drop(graph);
    let [_, c, h, w] = program.input_shape[..] else {
        return Err(format_err(path, "the graph's input is not 4-D"));
    };
    let (Some(c), Some(h), Some(w)) = (c, h, w) else {
        return Err(format_err(
            path,
            format!(
                "the graph does not declare the size of its images (input shape {:?}): export it with a fixed [C, H, W]",
                program.input_shape
            ),
        ));
    };
    if c.saturating_mul(h).saturating_mul(w) > MAX_INPUT_ELEMENTS {
        return Err(format_err(
            path,
            format!(
                "the graph takes {c}x{h}x{w} images, more than the {MAX_INPUT_ELEMENTS} values per image anu accepts"
            ),
        ));
    }
    let (mean, inv_std) = match normalization {
        None => (None, None),
        Some(n) => {
            if n.mean.len() != c || n.std.len() != c {
                return Err(format_err(
                    path,
                    format!(
                        "--mean and --std need one value per channel ({c}), got {} and {}",
                        n.mean.len(),
                        n.std.len()
                    ),
                ));
            }
            if n.std.iter().any(|s| !(s.is_finite() && *s > 0.0)) || n.mean.iter().any(|m| !m.is_finite()) {
                return Err(format_err(path, "--std must be positive and --mean finite"));
            }
            let inv: Vec<f32> = n.std.iter().map(|s| 1.0 / s).collect();
            let channel = |v: Vec<f32>| Param::from_data(burn::tensor::TensorData::new(v, [1, c, 1, 1]), device);
            (Some(channel(n.mean.clone())), Some(channel(inv)))
        }
    };
    let stripped = program.stripped_softmax;
    let consts = weights
        .consts
        .into_iter()
        .map(|(values, shape)| eval::Constant::new(values, &shape, device))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format_err(path, e))?;
    let mut model = OnnxModel {
        kernels: weights
            .kernels
            .into_iter()
            .map(|d| Param::from_data(d, device))
            .collect(),
        matrices: weights
            .matrices
            .into_iter()
            .map(|d| Param::from_data(d, device))
            .collect(),
        biases: weights
            .biases
            .into_iter()
            .map(|d| Param::from_data(d, device))
            .collect(),
        consts,
        mean,
        inv_std,
        program: Arc::new(program),
        info: Arc::new(GraphInfo {
            spec: InputSpec {
                image_shape: [c, h, w],
                num_classes: 0,
            },
            macs: 0,
        }),
    };
    let probe = Tensor::<4>::zeros([2, c, h, w], device);
    let (num_classes, macs) = model
        .run(probe)
        .map(|(logits, macs)| (logits.dims()[1], macs))
        .map_err(|e| format_err(path, format!("the graph does not run on {c}x{h}x{w} images: {e}")))?;
    model.info = Arc::new(GraphInfo {
        spec: InputSpec {
            image_shape: [c, h, w],
            num_classes,
        },
        macs,
    });
    if stripped {
        eprintln!(
            "note: {}: the graph ends in a Softmax, which is left out: attacks work on its logits",
            path.display()
        );
    }
    Ok((model, sha256))
}
