//! `anu`: fast minimal-norm L2 adversarial attacks (ANU and DDN) and adversarial training,
//! after Liu & Cao, "Self-adaptive Norm Update for Faster Gradient-based L2 Adversarial
//! Attacks and Defenses", on the `burn` deep-learning framework.
//!
//! Layout: [`attack`] (the one DDN/ANU loop, specs, observers, campaigns), [`models`]
//! (classifiers and weight files), [`data`] (data sets and their facts), [`train`] (training,
//! adversarial training of Eq. 6-7 in [`train::adversarial`]), [`reproduce`] and [`robustness`] (the paper's tables
//! and figures), [`bench`] (throughput); errors are [`Error`].

pub mod attack;
pub mod augment;
pub mod bench;
pub mod data;
pub mod device;
pub mod error;
pub mod eval;
pub mod figures;
pub mod fsutil;
pub mod json_nan;
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
