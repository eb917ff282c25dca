//! The attack loop shared by DDN (Alg. 1), ANU (Alg. 2) and FMN.
//!
//! Everything per sample is kept in whole tensors on the device; nothing is read back to the
//! host inside the loop unless an [`Observer`] asks for it.

use std::time::Instant;

use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use rand::{Rng, SeedableRng};

use super::precision::{Precision, Recheck, confirm_in_f32};
use super::rules::{EpsInputs, Objective, cosine_annealed};
use super::{AttackSpec, Observer, StepView};
use crate::models::{Classifier, ModelError};

/// What the attack aims for.
#[derive(Clone, Debug)]
pub enum Goal {
    /// Any label but these true labels (`m = +1` in Alg. 1-2).
    Untargeted(Tensor<1, Int>),
    /// Exactly these target labels (`m = -1`).
    Targeted(Tensor<1, Int>),
}

impl Goal {
    /// The labels the loss is taken on.
    pub fn labels(&self) -> &Tensor<1, Int> {
        match self {
            Goal::Untargeted(l) | Goal::Targeted(l) => l,
        }
    }

    /// Whether this is a targeted attack.
    pub fn is_targeted(&self) -> bool {
        matches!(self, Goal::Targeted(_))
    }
}

/// Outcome of an attack on a batch.
#[derive(Clone, Debug)]
pub struct AttackResult {
    /// Best adversarial per sample (the original image where the attack failed), `[B, C, H, W]`.
    pub adversarials: Tensor<4>,
    /// ||x' - x||_2 per sample; 0 for samples misclassified from the start, infinity on failure.
    pub norms: Vec<f32>,
    /// Whether an adversarial was found.
    pub success: Vec<bool>,
    /// Seconds spent in observers that read tensors back (to be left out of timings).
    pub observer_seconds: f64,
    /// The full-f32 check of the successes of a reduced-precision run (zero in f32).
    pub recheck: Recheck,
    /// Samples for which the model gave a NaN or infinite logit or input gradient at some
    /// iteration (0 for a sound model): their norms and successes mean nothing.
    pub non_finite: usize,
}

/// A classifier ready to be attacked: in evaluation mode (no dropout), on an autodiff device,
/// with no gradient kept for its parameters, so each backward pass computes only the input
/// gradient; in a reduced [`Precision`], with the full-f32 model kept for the final check.
#[derive(Clone, Debug)]
pub struct AttackedModel {
    model: Classifier,
    grad_device: Device,
    precision: Precision,
    exact: Option<Classifier>,
}

impl AttackedModel {
    /// Prepares `model` for attacks on `device` in full f32.
    pub fn new(model: &Classifier, device: &Device) -> Self {
        Self::with_precision(model, device, Precision::F32)
    }

    /// Prepares `model` for attacks on `device` whose passes run in `precision`.
    pub fn with_precision(model: &Classifier, device: &Device, precision: Precision) -> Self {
        let grad_device = device.clone().autodiff();
        let valid = model.valid().to_device(device);
        let exact = precision.is_reduced().then(|| valid.clone());
        Self {
            model: precision.round_weights(valid).to_device(&grad_device).no_grad(),
            grad_device,
            precision,
            exact,
        }
    }

    /// The precision of the attack's passes.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The prepared classifier.
    pub fn classifier(&self) -> &Classifier {
        &self.model
    }
}

/// Per-sample norm `[B]` of a `[B, C, H, W]` tensor.
fn sample_norm(t: Tensor<4>) -> Tensor<1> {
    let b = t.dims()[0];
    t.square().sum_dims(&[1, 2, 3]).reshape([b]).sqrt()
}

/// `[B]` -> `[B, 1, 1, 1]` for broadcasting over images.
fn per_image(t: Tensor<1>) -> Tensor<4> {
    let b = t.dims()[0];
    t.reshape([b, 1, 1, 1])
}

/// Runs DDN, ANU or FMN (by the spec's norm-update rule) on `images` (`[B, C, H, W]` in
/// [0,1]), passing them through the model `pass_chunk` at a time (0: all at once; the result
/// does not depend on it).
///
/// The loop follows the reference DDN order: evaluate x'_{k-1}, keep it if it is adversarial
/// with a smaller norm (Alg. 2 step 24), step along the normalised gradient (steps 5-6),
/// update gamma_k (7-14) and eps_k (16-20), project onto the eps-sphere (21) and clip to
/// [0,1] (22). FMN takes the same steps with its own objective, eps rule and ball projection
/// (see [`super::NormUpdate`]). `observer` sees the state after every iteration.
pub fn run(
    model: &AttackedModel,
    images: Tensor<4>,
    goal: &Goal,
    spec: &AttackSpec,
    pass_chunk: usize,
    observer: &mut impl Observer,
) -> Result<AttackResult, ModelError> {
    let device = images.device().inner();
    let x = images.inner().to_device(&device);
    let [b, _, _, _] = x.dims();
    let labels = goal.labels().clone().inner().to_device(&device);
    let targeted = goal.is_targeted();
    let observing = observer.reads_tensors();
    let mut observer_seconds = 0.0;

    // ||max(x, 1 - x)||: no point of [0,1]^n is farther from x.
    let worst_norm = sample_norm(x.clone().max_pair(x.clone().neg().add_scalar(1.0)));
    let mut best_norm = worst_norm.clone();
    let mut best_adv = x.clone();
    let mut found = Tensor::<1>::zeros([b], &device).bool();
    let mut non_finite = Tensor::<1>::zeros([b], &device).bool();
    let mut eps = Tensor::<1>::full([b], spec.init_eps(), &device);
    let mut x_adv = x.clone(); // Alg. 2 step 1: delta_0 = 0, x'_0 = x.
    let mut rule_state = spec.norm_update().start(b, &device);
    let fallback = fallback_directions(x.dims(), &device);
    let steps = spec.steps();
    let label_index = labels.clone().reshape([b, 1]);
    let rule = spec.norm_update();

    for k in 0..steps {
        let alpha = cosine_annealed(spec.alpha_max(), spec.alpha_min(), k, steps);
        let delta = x_adv.clone().sub(x.clone());
        let norm = sample_norm(delta.clone());

        // Logits of x'_{k-1} with the input gradient of the loss (step 5).
        let (logits, grad, objective) =
            logits_and_input_gradient(model, &x_adv, &label_index, targeted, rule.objective(), pass_chunk)?;

        let predicted = logits.clone().argmax(1).reshape([b]);
        let adversarial = if targeted {
            predicted.equal(labels.clone())
        } else {
            predicted.not_equal(labels.clone())
        };

        // Keep the smallest adversarial so far (Alg. 2 step 24; strict, as the reference). The
        // first one is kept whatever its norm, as long as it is a point of the box (a NaN
        // iterate from non-finite logits never is); an attack succeeds only through an
        // iterate that was stored.
        let first = found
            .clone()
            .bool_not()
            .bool_and(norm.clone().lower_equal(worst_norm.clone()));
        let better = norm.clone().lower(best_norm.clone()).bool_or(first);
        let improved = adversarial.clone().bool_and(better);
        best_norm = best_norm.mask_where(improved.clone(), norm.clone());
        best_adv = best_adv.mask_where(improved.clone().reshape([b, 1, 1, 1]).expand(x.dims()), x_adv.clone());
        found = found.bool_or(improved.clone());

        // Step 6: delta_k = delta_{k-1} + alpha g / ||g||_2.
        let grad_norm = sample_norm(grad.clone());
        // Samples whose logits or gradient left f32's finite range (read once, after the loop).
        non_finite = non_finite
            .bool_or(logits.is_finite().bool_not().any_dim(1).reshape([b]))
            .bool_or(grad_norm.clone().is_finite().bool_not());
        let direction = normalise(grad, grad_norm.clone(), &fallback);
        let delta = delta.add(direction.mul_scalar(alpha));

        // Steps 7-20: the rule's gamma_k, then eps_k, capped at the worst-case norm.
        let gamma = rule.gamma(&mut rule_state, &adversarial, k, steps);
        eps = rule.next_eps(EpsInputs {
            eps,
            gamma: &gamma,
            adversarial,
            found: &found,
            best_norm: &best_norm,
            norm: &norm,
            objective: &objective,
            grad_norm: &grad_norm,
            worst_norm: &worst_norm,
        });

        // Steps 21-22: project onto the eps-sphere around x (FMN: into the eps-ball), then
        // clip to [0,1].
        let scale = projection_scale(&eps, sample_norm(delta.clone()), rule.projects_onto_sphere());
        let mut next = x.clone().add(delta.mul(per_image(scale))).clamp(0.0, 1.0);
        if spec.quantize() {
            next = next.mul_scalar(255.0).round().div_scalar(255.0);
        }
        x_adv = next;

        let view = StepView {
            k: k + 1,
            norm: &norm,
            best_norm: &best_norm,
            found: &found,
            eps: &eps,
            gamma: &gamma,
        };
        if observing {
            // Let the device finish this iteration first, so that only the observer's own
            // work is left out of the attack's time.
            let _ = device.sync();
            let t0 = Instant::now();
            observer.on_step(&view);
            observer_seconds += t0.elapsed().as_secs_f64();
        } else {
            observer.on_step(&view);
        }
    }

    let non_finite = non_finite.int().sum().into_scalar::<i64>() as usize;
    let mut success: Vec<bool> = found.into_data().iter::<bool>().collect();
    let mut norms: Vec<f32> = super::observe::to_vec(best_norm)
        .into_iter()
        .zip(&success)
        .map(|(n, &ok)| if ok { n } else { f32::INFINITY })
        .collect();
    // A success found in reduced precision counts only once the f32 model agrees.
    let (adversarials, recheck) = match &model.exact {
        Some(exact) => confirm_in_f32(exact, &x, &labels, targeted, best_adv, &mut norms, &mut success)?,
        None => (best_adv, Recheck::default()),
    };
    Ok(AttackResult {
        adversarials,
        norms,
        success,
        observer_seconds,
        recheck,
        non_finite,
    })
}

/// Logits of `x_adv`, the attack objective per sample (the quantity to increase) and its
/// gradient with respect to `x_adv`, on the plain device. Cross-entropy: ascend the
/// cross-entropy of the true label (untargeted, m = +1) or descend that of the target
/// (targeted, m = -1); logit margin (FMN): increase the best other logit over the label's
/// (untargeted) or the target's over the best other (targeted). The objective is summed over
/// samples, so each sample's gradient is independent of the others: the batch is passed
/// through the model in chunks of `chunk` images (0: all at once), which keeps a CPU's caches
/// warm.
pub(crate) fn logits_and_input_gradient(
    model: &AttackedModel,
    x_adv: &Tensor<4>,
    label_index: &Tensor<2, Int>,
    targeted: bool,
    objective: Objective,
    chunk: usize,
) -> Result<(Tensor<2>, Tensor<4>, Tensor<1>), ModelError> {
    let b = x_adv.dims()[0];
    let chunk = if chunk == 0 { b } else { chunk.min(b) };
    let mut all_logits = Vec::with_capacity(b.div_ceil(chunk));
    let mut all_grads = Vec::with_capacity(b.div_ceil(chunk));
    let mut all_values = Vec::with_capacity(b.div_ceil(chunk));
    let device = x_adv.device();
    let mut start = 0;
    while start < b {
        let end = (start + chunk).min(b);
        let (part, labels) = if chunk == b {
            (x_adv.clone(), label_index.clone())
        } else {
            (
                x_adv.clone().narrow(0, start, end - start),
                label_index.clone().narrow(0, start, end - start),
            )
        };
        let n = end - start;
        let part = model.precision.round_tensor(part);
        let leaf = Tensor::from_inner(part).to_device(&model.grad_device).require_grad();
        let logits = model.model.forward(leaf.clone())?;
        let labels = Tensor::from_inner(labels).to_device(&model.grad_device);
        let values = match objective {
            Objective::CrossEntropy => {
                let picked = log_softmax(logits.clone(), 1).gather(1, labels);
                if targeted { picked } else { picked.neg() }
            }
            Objective::LogitMargin => logit_margin(logits.clone(), labels, targeted),
        };
        let grads = values.clone().sum().backward();
        all_values.push(values.inner().reshape([n]).to_device(&device));
        all_grads.push(
            leaf.grad(&grads)
                .expect("the input is a tracked leaf")
                .inner()
                .to_device(&device),
        );
        all_logits.push(logits.inner().to_device(&device));
        start = end;
    }
    Ok(if all_grads.len() == 1 {
        (
            all_logits.pop().expect("one chunk"),
            all_grads.pop().expect("one chunk"),
            all_values.pop().expect("one chunk"),
        )
    } else {
        (
            Tensor::cat(all_logits, 0),
            Tensor::cat(all_grads, 0),
            Tensor::cat(all_values, 0),
        )
    })
}

/// Per-sample logit margin `[B, 1]` to increase: the best logit other than the label's minus
/// the label's (untargeted), or the target's minus the best other (targeted). Positive means
/// the goal is reached.
fn logit_margin(logits: Tensor<2>, labels: Tensor<2, Int>, targeted: bool) -> Tensor<2> {
    let [b, classes] = logits.dims();
    let device = logits.device();
    let own = logits.clone().gather(1, labels.clone());
    let class_index = Tensor::<1, Int>::arange(0..classes as i64, &device)
        .reshape([1, classes])
        .expand([b, classes]);
    let is_label = class_index.equal(labels.expand([b, classes]));
    let best_other = logits.mask_fill(is_label, f32::MIN).max_dim(1);
    if targeted {
        own.sub(best_other)
    } else {
        best_other.sub(own)
    }
}

/// Factor per sample that brings a perturbation of norm `delta_norm` to radius `eps`: onto
/// the sphere (DDN, ANU: Alg. 2 step 21), or into the ball, shrinking only (FMN).
pub fn projection_scale(eps: &Tensor<1>, delta_norm: Tensor<1>, sphere: bool) -> Tensor<1> {
    let scale = eps.clone().div(delta_norm.clamp_min(1e-12));
    if sphere { scale } else { scale.clamp_max(1.0) }
}

/// One fixed pseudo-random unit direction per sample, drawn on the host from a fixed seed:
/// the step direction of a sample whose gradient is exactly zero (the reference DDN code
/// draws a random direction there too). Drawn once per run, so the loop needs no read-back
/// to find such samples, and runs stay reproducible.
fn fallback_directions(shape: [usize; 4], device: &Device) -> Tensor<4> {
    let per_sample: usize = shape[1..].iter().product();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x0061_6e75);
    let mut values = Vec::with_capacity(shape[0] * per_sample);
    for _ in 0..shape[0] {
        let v: Vec<f32> = (0..per_sample).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let norm = v.iter().map(|a| a * a).sum::<f32>().sqrt().max(1e-12);
        values.extend(v.into_iter().map(|a| a / norm));
    }
    Tensor::<1>::from_data(TensorData::new(values, [shape.iter().product::<usize>()]), device).reshape(shape)
}

/// g / ||g||_2 per sample (`norm` is ||g||_2); a sample whose gradient is exactly zero takes
/// its fallback direction instead. No value is read back to the host.
fn normalise(grad: Tensor<4>, norm: Tensor<1>, fallback: &Tensor<4>) -> Tensor<4> {
    let shape = grad.dims();
    let zero = norm.clone().equal_elem(0.0);
    let grad = grad.mask_where(
        zero.clone().reshape([shape[0], 1, 1, 1]).expand(shape),
        fallback.clone(),
    );
    grad.div(per_image(norm.mask_fill(zero, 1.0)))
}
