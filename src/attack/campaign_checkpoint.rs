//! The results of a campaign so far, saved after every batch so that an interrupted run (a
//! crash, a closed terminal, a machine taken back) continues where it stopped instead of
//! starting again: a targeted ImageNet row is 4000 attacks and hours of CPU time.
//!
//! The file records what is being run (the caller's description: attack, settings, model,
//! data set) and a SHA-256 of the attacked images, labels and targets; a file of another
//! campaign is refused, not mixed in. It also records each process's share of the work
//! ([`Segment`]: attacks, seconds, device, CPU), since a resumed campaign's time is the sum of
//! runs that may have been on different machines.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{AttackSet, Campaign, CampaignResult, Observer, Recheck, attack_remaining};
use crate::error::{Error, Result};
use crate::fsutil::{self, JsonFile};

/// One process's share of a campaign.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    /// Attacks it made.
    pub attacks: usize,
    /// Seconds of attack loops it ran.
    pub seconds: f64,
    /// The device it computed on.
    pub device: String,
    /// The CPU of its machine.
    pub cpu: String,
    /// The commit anu was built from.
    #[serde(default)]
    pub commit: String,
}

/// A campaign's progress, as saved between batches.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CampaignCheckpoint {
    /// What is being run, as the caller describes it (compared, not interpreted).
    pub run: serde_json::Value,
    /// SHA-256 of the attacked images, their labels and targets.
    pub attacks_sha256: String,
    /// Number of attacks in the campaign.
    pub total: usize,
    /// Norm of each attack done, in order; `None` for a failed attack (infinite norm).
    pub norms: Vec<Option<f32>>,
    /// Whether each attack done succeeded.
    pub success: Vec<bool>,
    /// Seconds of attack loops so far, all segments together.
    pub seconds: f64,
    /// Each run's share, in order.
    pub segments: Vec<Segment>,
    /// The full-f32 check of the successes so far (reduced-precision runs).
    #[serde(default)]
    pub recheck: Recheck,
}

impl CampaignCheckpoint {
    /// Nothing done yet of `set`, described by `run`.
    pub fn new(run: serde_json::Value, set: &AttackSet) -> Self {
        Self {
            run,
            attacks_sha256: set.sha256(),
            total: set.len(),
            norms: Vec::new(),
            success: Vec::new(),
            seconds: 0.0,
            segments: Vec::new(),
            recheck: Recheck::default(),
        }
    }

    /// The progress saved at `path` if it is of this campaign (`run` on `set`), nothing done if
    /// there is no file. A file of another campaign, or one that cannot be read or does not
    /// hold a consistent progress, is an error that names it.
    pub fn resume_or_new(path: &Path, run: serde_json::Value, set: &AttackSet) -> Result<Self> {
        let fresh = Self::new(run, set);
        let saved: Self = match fsutil::read_json(path) {
            JsonFile::Absent => return Ok(fresh),
            JsonFile::Valid(saved) => saved,
            JsonFile::Corrupt(reason) => return Err(Self::error(path, reason)),
        };
        let other = |what: &str| {
            Self::error(
                path,
                format!("holds the partial results of another campaign ({what} differ)"),
            )
        };
        if saved.run != fresh.run {
            return Err(other("the attack settings, model or data set"));
        }
        if saved.attacks_sha256 != fresh.attacks_sha256 || saved.total != fresh.total {
            return Err(other("the attacked images, labels or targets"));
        }
        let consistent = saved.norms.len() == saved.success.len()
            && saved.norms.len() <= saved.total
            && saved.norms.iter().zip(&saved.success).all(|(n, s)| n.is_some() == *s)
            && saved.norms.iter().flatten().all(|n| n.is_finite() && *n >= 0.0)
            && saved.seconds.is_finite()
            && saved.seconds >= 0.0
            && saved.recheck.failed <= saved.recheck.checked
            && saved.segments.iter().map(|s| s.attacks).sum::<usize>() == saved.norms.len();
        if !consistent {
            return Err(Self::error(
                path,
                "inconsistent partial results (edited or damaged)".into(),
            ));
        }
        Ok(saved)
    }

    fn error(path: &Path, reason: String) -> Error {
        Error::Checkpoint {
            path: path.to_path_buf(),
            reason,
        }
    }

    /// Number of attacks done.
    pub fn done(&self) -> usize {
        self.norms.len()
    }

    /// The results so far, as a campaign that continues from them takes them (no adversarial
    /// images).
    pub fn result(&self) -> CampaignResult {
        CampaignResult {
            norms: self.norms.iter().map(|n| n.unwrap_or(f32::INFINITY)).collect(),
            success: self.success.clone(),
            adversarials: None,
            seconds: self.seconds,
            recheck: self.recheck,
        }
    }

    /// Starts this process's segment, on `device` of the machine whose CPU is `cpu`, with anu
    /// built from `commit`.
    pub fn start_segment(&mut self, device: String, cpu: String, commit: String) {
        self.segments.push(Segment {
            attacks: 0,
            seconds: 0.0,
            device,
            cpu,
            commit,
        });
    }

    /// Takes the results so far of the campaign (which continued from [`Self::result`]) into
    /// the current segment.
    pub fn record(&mut self, so_far: &CampaignResult) {
        let before: usize = self.segments.iter().rev().skip(1).map(|s| s.attacks).sum();
        let seconds_before: f64 = self.segments.iter().rev().skip(1).map(|s| s.seconds).sum();
        let segment = self.segments.last_mut().expect("a segment is started before recording");
        segment.attacks = so_far.norms.len() - before;
        segment.seconds = so_far.seconds - seconds_before;
        self.norms = so_far.norms.iter().map(|n| n.is_finite().then_some(*n)).collect();
        self.success = so_far.success.clone();
        self.seconds = so_far.seconds;
        self.recheck = so_far.recheck;
    }

    /// Writes the progress to `path` (atomically: a crash leaves the previous one).
    pub fn save(&self, path: &Path) -> Result<()> {
        Ok(fsutil::write_json(path, self)?)
    }
}

/// What to do with a partial file that holds another campaign's progress, or a damaged one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnOtherCampaign {
    /// Stop with the error (the user decides what to do with the file).
    Refuse,
    /// Say so and start over, overwriting the file.
    StartOver,
}

/// A campaign whose progress is kept in a partial file after every batch and taken up again
/// from it: the one runner of `anu attack` and of each row of `anu reproduce`.
pub struct SavedCampaign {
    /// The progress so far.
    pub checkpoint: CampaignCheckpoint,
    partial: Option<std::path::PathBuf>,
}

impl SavedCampaign {
    /// The progress of `run` on `set` saved at `partial` (nothing done when there is no file,
    /// and nothing read or saved when `partial` is `None`). A file of another campaign, or a
    /// damaged one, is an error under [`OnOtherCampaign::Refuse`]; under
    /// [`OnOtherCampaign::StartOver`] the campaign starts over and `note` is told why.
    pub fn open(
        partial: Option<&Path>,
        run: serde_json::Value,
        set: &AttackSet,
        on_other: OnOtherCampaign,
        note: &mut dyn FnMut(String),
    ) -> Result<Self> {
        let checkpoint = match partial {
            None => CampaignCheckpoint::new(run, set),
            Some(path) => match CampaignCheckpoint::resume_or_new(path, run.clone(), set) {
                Ok(saved) => saved,
                Err(e) if on_other == OnOtherCampaign::StartOver => {
                    note(format!("{e}; starting over"));
                    CampaignCheckpoint::new(run, set)
                }
                Err(e) => return Err(e),
            },
        };
        Ok(Self {
            checkpoint,
            partial: partial.map(Path::to_path_buf),
        })
    }

    /// Number of attacks already done.
    pub fn done(&self) -> usize {
        self.checkpoint.done()
    }

    /// Runs what is left of `campaign` as this process's segment (on the device that calls
    /// itself `device_name`), saving the progress after every batch; a save that fails is
    /// told to `note` once and the campaign goes on unsaved.
    pub fn run(
        &mut self,
        campaign: &Campaign<'_>,
        device_name: String,
        observer: &mut impl Observer,
        note: &mut dyn FnMut(String),
    ) -> Result<CampaignResult> {
        let cpu = crate::machine::CpuInfo::read().describe();
        self.checkpoint
            .start_segment(device_name, cpu, crate::manifest::COMMIT.to_string());
        let done = self.checkpoint.result();
        let (checkpoint, partial) = (&mut self.checkpoint, &self.partial);
        let mut save_failed = false;
        attack_remaining(campaign, done, observer, &mut |so_far| {
            checkpoint.record(so_far);
            if let (Some(path), false) = (partial, save_failed)
                && let Err(e) = checkpoint.save(path)
            {
                note(format!("warning: the results so far are not saved: {e}"));
                save_failed = true;
            }
        })
    }

    /// Removes the partial file, once the finished results are written elsewhere.
    pub fn finish(&self) -> Result<()> {
        match &self.partial {
            Some(path) => Ok(fsutil::remove_if_present(path)?),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Dataset;

    fn set(labels: Vec<u16>) -> AttackSet {
        let n = labels.len();
        let pixels = (0..n * 4).map(|i| i as u8).collect();
        AttackSet::untargeted(Dataset::new(pixels, labels, [1, 2, 2], 10).unwrap())
    }

    /// The digest is of one fixed byte layout (files written by earlier builds stay valid).
    #[test]
    fn the_digest_covers_shape_pixels_labels_and_targets_in_a_fixed_layout() {
        let mut targeted = set(vec![3, 7]);
        targeted.targets = Some(vec![1, 2]);
        let mut expected = Vec::new();
        for d in [1u64, 2, 2, 10, 2] {
            expected.extend(d.to_le_bytes());
        }
        expected.extend(0u8..8);
        for l in [3u16, 7, 1, 2] {
            expected.extend(l.to_le_bytes());
        }
        assert_eq!(targeted.sha256(), fsutil::sha256_hex(&expected));
        let untargeted = set(vec![3, 7]);
        assert_ne!(untargeted.sha256(), targeted.sha256());
    }

    fn progress(norms: Vec<f32>, seconds: f64) -> CampaignResult {
        CampaignResult {
            success: norms.iter().map(|n| n.is_finite()).collect(),
            norms,
            adversarials: None,
            seconds,
            recheck: Recheck::default(),
        }
    }

    #[test]
    fn progress_survives_a_round_trip_and_segments_add_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.part");
        let run = serde_json::json!({"attack": "ddn", "steps": 100});
        let attacks = set(vec![1, 2, 3, 4]);
        let mut first = CampaignCheckpoint::resume_or_new(&path, run.clone(), &attacks).unwrap();
        assert_eq!(first.done(), 0);
        first.start_segment("flex".into(), "cpu A".into(), "a".into());
        first.record(&progress(vec![0.5, f32::INFINITY], 2.0));
        first.save(&path).unwrap();

        let mut second = CampaignCheckpoint::resume_or_new(&path, run.clone(), &attacks).unwrap();
        assert_eq!(second.done(), 2);
        let so_far = second.result();
        assert_eq!(so_far.norms, vec![0.5, f32::INFINITY]);
        assert_eq!(so_far.success, vec![true, false]);
        second.start_segment("wgpu".into(), "cpu B".into(), "b".into());
        second.record(&progress(vec![0.5, f32::INFINITY, 0.25, 0.0], 5.0));
        second.save(&path).unwrap();

        let third = CampaignCheckpoint::resume_or_new(&path, run, &attacks).unwrap();
        assert_eq!(third.done(), 4);
        let shares: Vec<(usize, f64)> = third.segments.iter().map(|s| (s.attacks, s.seconds)).collect();
        assert_eq!(shares, vec![(2, 2.0), (2, 3.0)]);
        assert_eq!(third.segments[1].device, "wgpu");
    }

    #[test]
    fn another_campaign_or_a_damaged_file_is_refused_with_the_file_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.part");
        let run = serde_json::json!({"attack": "ddn", "steps": 100});
        let attacks = set(vec![1, 2, 3]);
        let mut saved = CampaignCheckpoint::new(run.clone(), &attacks);
        saved.start_segment("flex".into(), "cpu".into(), "a".into());
        saved.record(&progress(vec![0.5], 1.0));
        saved.save(&path).unwrap();

        let other_settings = serde_json::json!({"attack": "ddn", "steps": 50});
        let err = CampaignCheckpoint::resume_or_new(&path, other_settings, &attacks).unwrap_err();
        assert!(
            err.to_string().contains("run.part") && err.to_string().contains("another campaign"),
            "{err}"
        );
        let err = CampaignCheckpoint::resume_or_new(&path, run.clone(), &set(vec![1, 2, 4])).unwrap_err();
        assert!(err.to_string().contains("images, labels or targets"), "{err}");

        // A success flag that contradicts its norm.
        let mut damaged = saved.clone();
        damaged.success[0] = false;
        damaged.save(&path).unwrap();
        let err = CampaignCheckpoint::resume_or_new(&path, run.clone(), &attacks).unwrap_err();
        assert!(err.to_string().contains("inconsistent"), "{err}");

        std::fs::write(&path, b"{\"run\": ").unwrap();
        let err = CampaignCheckpoint::resume_or_new(&path, run, &attacks).unwrap_err();
        assert!(err.to_string().contains("run.part"), "{err}");
    }
}
