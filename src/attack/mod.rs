//! Minimal-norm L2 attacks: DDN (Alg. 1), ANU (Alg. 2) and FMN as one loop, [`engine::run`],
//! that differs between them only in the [`NormUpdate`] rule (which gives FMN its own objective
//! and projection too); each rule is one file of [`rules`].
//!
//! An attack is described by its [`AttackSpec`] (the algorithm's settings, validated when
//! built; the papers' values in [`paper`]), executed with an [`Execution`] (batch size, pass
//! chunking, [`Precision`]) and watched by an [`Observer`] (trace, progress, Figure 4's means).

pub mod campaign;
pub mod campaign_checkpoint;
pub mod engine;
pub mod execution;
pub mod kind;
pub mod observe;
pub mod paper;
pub mod precision;
pub mod report;
pub mod rules;
pub mod settings;
pub mod spec;
pub mod stats;

pub use campaign::{AttackSet, Campaign, CampaignResult, attack_all, attack_remaining};
pub use campaign_checkpoint::{CampaignCheckpoint, OnOtherCampaign, SavedCampaign};
pub use engine::{AttackResult, AttackedModel, Goal, run};
pub use execution::{CPU_PASS_CHUNK, Execution};
pub use kind::AttackKind;
pub use observe::{EveryStep, MeanNormRecorder, NoObserver, Observer, StepView, Trace, TraceRecorder};
pub use paper::{paper_rule, paper_spec};
pub use precision::{Precision, Recheck};
pub use report::{AttackReport, MergedShard};
pub use rules::{Anu, Ddn, Fmn, NormUpdate};
pub use settings::{SpecError, SpecOverrides};
pub use spec::AttackSpec;
