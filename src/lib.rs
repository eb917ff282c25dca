//! `anu`: fast minimal-norm L2 adversarial attacks (ANU and DDN) and adversarial training,
//! after Liu & Cao, "Self-adaptive Norm Update for Faster Gradient-based L2 Adversarial
//! Attacks and Defenses", on the `burn` deep-learning framework.

pub mod adversarial;
pub mod attack;
pub mod augment;
pub mod bench;
pub mod data;
pub mod device;
pub mod eval;
pub mod figures;
pub mod fsutil;
pub mod models;
pub mod reproduce;
pub mod robustness;
pub mod train;
