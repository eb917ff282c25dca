//! `anu`: fast minimal-norm L2 adversarial attacks (ANU and DDN) and adversarial training,
//! after Liu & Cao, "Self-adaptive Norm Update for Faster Gradient-based L2 Adversarial
//! Attacks and Defenses", on the `burn` deep-learning framework.
//!
//! Layout: [`attack`] (the one DDN/ANU loop, specs, observers, campaigns), [`models`] (classifiers
//! and weight files), [`data`] (data sets and their facts), [`train`] (training, adversarial
//! training of Eq. 6-7 in [`train::adversarial`], augmentation in [`train::augment`]),
//! [`reproduce`] and [`robustness`] (the paper's tables and figures), [`bench`] (throughput);
//! errors are [`Error`].
//!
//! `unsafe` code is denied outside [`kernels`] (the CPU kernels) and the few calls that need
//! it elsewhere, each allowed by name: [`allocator::retain_freed_memory`],
//! [`device::default_burn_device_to_cpu`] and the CUDA library probe in [`device::cuda`].

#![deny(unsafe_code)]

pub mod allocator;
pub mod attack;
pub mod bench;
pub mod data;
pub mod device;
pub mod error;
pub mod eval;
pub mod figures;
pub mod fsutil;
pub mod json_nan;
#[allow(unsafe_code)]
pub mod kernels;
pub mod loss;
pub mod machine;
pub mod manifest;
pub mod models;
pub mod reproduce;
pub mod robustness;
pub mod shard;
pub mod train;

pub use error::{Error, Result};
