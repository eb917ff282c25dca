//! How an attack is executed: batch size and pass chunking, which change no result, and the
//! precision of its passes, whose successes are confirmed in f32 (see [`super::precision`]).

use super::Precision;
use crate::device::Backend;
use crate::error::{Error, Result};

/// Images per forward/backward pass on CPU backends, from `anu bench`: small chunks keep the
/// convolution backward pass in cache.
pub const CPU_PASS_CHUNK: usize = 64;

/// Execution settings of an attack campaign.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Execution {
    batch_size: usize,
    pass_chunk: usize,
    precision: Precision,
}

impl Execution {
    /// Attacks `batch_size` images at a time (at least 1), passing them through the model
    /// `pass_chunk` at a time (0: the whole batch at once).
    pub fn new(batch_size: usize, pass_chunk: usize) -> Result<Self> {
        if batch_size == 0 {
            return Err(Error::Invalid("the batch size must be at least 1".into()));
        }
        Ok(Self {
            batch_size,
            pass_chunk,
            precision: Precision::F32,
        })
    }

    /// `batch_size` images at a time with the pass chunk that suits `device`: chunks of
    /// [`CPU_PASS_CHUNK`] on CPU backends, the whole batch on a GPU.
    pub fn for_device(backend: Backend, batch_size: usize) -> Result<Self> {
        let chunk = if backend.is_cpu() { CPU_PASS_CHUNK } else { 0 };
        Self::new(batch_size, chunk)
    }

    /// The same with another pass chunk.
    pub fn with_pass_chunk(self, pass_chunk: usize) -> Self {
        Self { pass_chunk, ..self }
    }

    /// The same with passes in `precision`.
    pub fn with_precision(self, precision: Precision) -> Self {
        Self { precision, ..self }
    }

    /// The precision of the passes (full f32 unless set).
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Attacks per batch.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Images per forward/backward pass (0: whole batch).
    pub fn pass_chunk(&self) -> usize {
        self.pass_chunk
    }
}
