//! Minimal-norm L2 attacks: DDN (Alg. 1) and ANU (Alg. 2) as one loop, [`engine::run`],
//! that differs between them only in the [`NormUpdate`] rule.

pub mod campaign;
pub mod config;
pub mod engine;
pub mod norm_update;
pub mod stats;

pub use campaign::{AttackSet, CampaignResult, attack_all};
pub use config::{AttackConfig, Goal, paper_config};
pub use engine::{AttackResult, Trace, prepare_model, run};
pub use norm_update::NormUpdate;
