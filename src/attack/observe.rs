//! Observers of an attack run: what is recorded per iteration, outside the attack itself.
//!
//! The loop reads nothing back from the device unless an observer asks to
//! ([`Observer::reads_tensors`]); the time such an observer takes, after the device has
//! finished the iteration's work, is left out of the attack's reported time.

use burn::prelude::*;

/// The state of a run after one iteration, as tensors on the device (`[B]` each).
pub struct StepView<'a> {
    /// 1-based index of the iteration just finished.
    pub k: usize,
    /// Norm ||x'_{k-1} - x||_2 of the iterate evaluated at this iteration.
    pub norm: &'a Tensor<1>,
    /// Lowest adversarial norm so far; the worst-case norm where none was found yet.
    pub best_norm: &'a Tensor<1>,
    /// Whether an adversarial has been found.
    pub found: &'a Tensor<1, Bool>,
    /// Radius eps_k after this iteration's update.
    pub eps: &'a Tensor<1>,
    /// Norm-update factor gamma_k used at this iteration.
    pub gamma: &'a Tensor<1>,
}

/// Something that watches an attack run iteration by iteration.
pub trait Observer {
    /// Whether [`Observer::on_step`] reads tensors back from the device. Only then does the
    /// loop synchronise before calling it, and only then is the call's time left out of the
    /// attack's time.
    fn reads_tensors(&self) -> bool {
        false
    }

    /// Called after every iteration of every batch.
    fn on_step(&mut self, step: &StepView<'_>);
}

/// Watches nothing.
pub struct NoObserver;

impl Observer for NoObserver {
    fn on_step(&mut self, _: &StepView<'_>) {}
}

/// Calls a closure after every iteration (a progress bar); reads nothing back.
pub struct EveryStep<F: FnMut()>(pub F);

impl<F: FnMut()> Observer for EveryStep<F> {
    fn on_step(&mut self, _: &StepView<'_>) {
        (self.0)()
    }
}

impl<T: Observer + ?Sized> Observer for &mut T {
    fn reads_tensors(&self) -> bool {
        (**self).reads_tensors()
    }
    fn on_step(&mut self, step: &StepView<'_>) {
        (**self).on_step(step)
    }
}

/// An observer that may be absent: `None` watches nothing and reads nothing back.
impl<T: Observer> Observer for Option<T> {
    fn reads_tensors(&self) -> bool {
        self.as_ref().is_some_and(Observer::reads_tensors)
    }
    fn on_step(&mut self, step: &StepView<'_>) {
        if let Some(observer) = self {
            observer.on_step(step)
        }
    }
}

impl<A: Observer, B: Observer> Observer for (A, B) {
    fn reads_tensors(&self) -> bool {
        self.0.reads_tensors() || self.1.reads_tensors()
    }
    fn on_step(&mut self, step: &StepView<'_>) {
        self.0.on_step(step);
        self.1.on_step(step);
    }
}

/// Per-iteration record of a run, indexed `[iteration][attack]`; over several batches the
/// attacks of later batches follow those of earlier ones.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Trace {
    /// Lowest adversarial norm found up to and including this iteration (infinity before any).
    pub best_norm: Vec<Vec<f32>>,
    /// Norm ||x'_k - x||_2 of the iterate evaluated at this iteration.
    pub norm: Vec<Vec<f32>>,
    /// Radius eps_k after this iteration's update.
    pub eps: Vec<Vec<f32>>,
    /// Norm-update factor gamma_k used at this iteration (constant for DDN).
    pub gamma: Vec<Vec<f32>>,
}

/// Records a [`Trace`] (reads four `[B]` vectors back per iteration).
#[derive(Default)]
pub struct TraceRecorder {
    /// What was recorded so far.
    pub trace: Trace,
}

impl Observer for TraceRecorder {
    fn reads_tensors(&self) -> bool {
        true
    }

    fn on_step(&mut self, step: &StepView<'_>) {
        let shown_best = step
            .best_norm
            .clone()
            .mask_fill(step.found.clone().bool_not(), f32::INFINITY);
        let t = &mut self.trace;
        for (rows, values) in [
            (&mut t.best_norm, shown_best),
            (&mut t.norm, step.norm.clone()),
            (&mut t.eps, step.eps.clone()),
            (&mut t.gamma, step.gamma.clone()),
        ] {
            let values = to_vec(values);
            match rows.get_mut(step.k - 1) {
                Some(row) => row.extend(values),
                None => rows.push(values),
            }
        }
    }
}

/// Records the mean norm of the iterates per iteration over all attacks (Figure 4); reads
/// one `[B]` vector back per iteration.
#[derive(Default)]
pub struct MeanNormRecorder {
    sums: Vec<f64>,
    attacks: usize,
}

impl MeanNormRecorder {
    /// Mean norm of the evaluated iterates at each iteration.
    pub fn means(&self) -> Vec<f64> {
        self.sums.iter().map(|s| s / self.attacks.max(1) as f64).collect()
    }

    /// Sum of the evaluated iterates' norms at each iteration.
    pub fn sums(&self) -> &[f64] {
        &self.sums
    }

    /// Number of attacks seen.
    pub fn attacks(&self) -> usize {
        self.attacks
    }
}

impl Observer for MeanNormRecorder {
    fn reads_tensors(&self) -> bool {
        true
    }

    fn on_step(&mut self, step: &StepView<'_>) {
        if step.k == 1 {
            self.attacks += step.norm.dims()[0];
        }
        let sum: f64 = to_vec(step.norm.clone()).iter().map(|&v| v as f64).sum();
        match self.sums.get_mut(step.k - 1) {
            Some(s) => *s += sum,
            None => self.sums.push(sum),
        }
    }
}

pub(crate) fn to_vec(t: Tensor<1>) -> Vec<f32> {
    t.into_data().iter::<f32>().collect()
}
