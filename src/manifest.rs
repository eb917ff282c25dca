//! A small record of where a result came from, written next to it: the command, the commit
//! the binary was built from, the CPU, versions, device and the hashes of the model files.

use std::path::Path;

use crate::data::DatasetName;
use crate::device::DeviceChoice;
use crate::error::Result;
use crate::fsutil::write_json;
use crate::machine::CpuInfo;
use crate::models::LoadedModel;

/// Commit the binary was built from (`unknown` outside a git checkout), with
/// `+uncommitted-changes` when tracked files differed from it at build time.
pub const COMMIT: &str = env!("ANU_GIT_COMMIT");
/// Version of burn the binary was built with.
pub const BURN_VERSION: &str = env!("ANU_BURN_VERSION");

/// A model file and its SHA-256.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelRecord {
    /// The file as given.
    pub path: String,
    /// SHA-256 of its bytes.
    pub sha256: String,
}

/// Provenance of a results folder or file.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    /// The command line that produced the results.
    pub command: String,
    /// Commit the binary was built from.
    pub commit: String,
    /// The CPU.
    pub cpu: String,
    /// Cores available.
    pub cores: usize,
    /// Version of anu.
    pub anu_version: String,
    /// Version of burn.
    pub burn_version: String,
    /// The device the tensors ran on, as `--device` named it.
    pub device: DeviceChoice,
    /// The name the device gives itself (a GPU's model), or the CPU backend's name.
    #[serde(default)]
    pub device_name: String,
    /// Model files used.
    pub models: Vec<ModelRecord>,
    /// The data set.
    pub dataset: DatasetName,
    /// How the manifest was made.
    pub recorded: String,
}

impl Manifest {
    /// A manifest of this process: `command` as run, on `device` (which calls itself
    /// `device_name`), with `models` on `dataset`.
    pub fn new(
        command: String,
        device: DeviceChoice,
        device_name: String,
        models: &[&LoadedModel],
        dataset: DatasetName,
    ) -> Self {
        let cpu = CpuInfo::read();
        Self {
            command,
            commit: COMMIT.to_string(),
            cpu: cpu.describe(),
            cores: cpu.cores,
            anu_version: env!("CARGO_PKG_VERSION").to_string(),
            burn_version: BURN_VERSION.to_string(),
            device,
            device_name,
            models: models
                .iter()
                .map(|m| ModelRecord {
                    path: m.path.display().to_string(),
                    sha256: m.sha256.clone(),
                })
                .collect(),
            dataset,
            recorded: "written by anu with the results".to_string(),
        }
    }

    /// The manifest of a result merged by `command` from shards, the first of which has
    /// `first`: its models, data set and device, with this process's command, commit and CPU.
    pub fn merged(first: &Manifest, command: String, shards: usize) -> Self {
        Self {
            models: first.models.clone(),
            recorded: format!("merged by anu from {shards} shard results; each shard's own manifest is kept with it"),
            ..Self::new(command, first.device, first.device_name.clone(), &[], first.dataset)
        }
    }

    /// Writes `manifest.json` into `dir`.
    pub fn write_to(&self, dir: &Path) -> Result<()> {
        Ok(write_json(&dir.join("manifest.json"), self)?)
    }
}
