//! The attack loop shared by DDN (Alg. 1) and ANU (Alg. 2).
//!
//! Everything per sample is kept in whole tensors on the device; nothing is read back to the
//! host inside the loop unless a trace is asked for (or a gradient is exactly zero).

use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::activation::log_softmax;

use super::norm_update::cosine_annealed;
use super::{AttackConfig, Goal};
use crate::models::Classifier;

/// Per-iteration record of a run, indexed `[iteration][sample]`.
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

/// Outcome of an attack on a batch.
#[derive(Clone, Debug)]
pub struct AttackResult {
    /// Best adversarial per sample (the original image where the attack failed), `[B, C, H, W]`.
    pub adversarials: Tensor<4>,
    /// ||x' - x||_2 per sample; 0 for samples misclassified from the start, infinity on failure.
    pub norms: Vec<f32>,
    /// Whether an adversarial was found.
    pub success: Vec<bool>,
    /// The per-iteration record, when asked for.
    pub trace: Option<Trace>,
}

/// The model as the attack needs it: on an autodiff device, in evaluation mode (no dropout),
/// with no gradient kept for its parameters, so each backward pass computes only the input
/// gradient.
pub fn prepare_model(model: &Classifier, device: &Device) -> Classifier {
    model.valid().to_device(&device.clone().autodiff()).no_grad()
}

/// Per-sample squared-sum reduced to `[B]`.
fn sample_norm(t: Tensor<4>) -> Tensor<1> {
    let b = t.dims()[0];
    t.square().sum_dims(&[1, 2, 3]).reshape([b]).sqrt()
}

/// `[B]` -> `[B, 1, 1, 1]` for broadcasting over images.
fn per_image(t: Tensor<1>) -> Tensor<4> {
    let b = t.dims()[0];
    t.reshape([b, 1, 1, 1])
}

/// Runs DDN or ANU (by `config.norm_update`) on `images` (`[B, C, H, W]` in [0,1]).
///
/// `model` must come from [`prepare_model`]. `on_step` is called after each iteration with
/// its 1-based index. The loop follows the reference DDN order: evaluate x'_{k-1}, keep it if
/// it is adversarial with a smaller norm (Alg. 2 step 24), step along the normalised gradient
/// (steps 5-6), update gamma_k (7-14) and eps_k (16-20), project onto the eps-sphere (21) and
/// clip to [0,1] (22).
pub fn run(
    model: &Classifier,
    images: Tensor<4>,
    goal: &Goal,
    config: &AttackConfig,
    mut on_step: impl FnMut(usize),
) -> AttackResult {
    let device = images.device().inner();
    let x = images.inner().to_device(&device);
    let [b, _, _, _] = x.dims();
    let labels = goal.labels().clone().inner().to_device(&device);
    let targeted = goal.is_targeted();
    let grad_device = model_device(model);

    // ||max(x, 1 - x)||: no point of [0,1]^n is farther from x.
    let worst_norm = sample_norm(x.clone().max_pair(x.clone().neg().add_scalar(1.0)));
    let mut best_norm = worst_norm.clone();
    let mut best_adv = x.clone();
    let mut found = Tensor::<1>::zeros([b], &device).bool();
    let mut eps = Tensor::<1>::full([b], config.init_eps, &device);
    let mut x_adv = x.clone(); // Alg. 2 step 1: delta_0 = 0, x'_0 = x.
    let mut rule_state = config.norm_update.start(b, &device);
    let mut trace = config.record_trace.then(Trace::default);
    let steps = config.steps;
    let label_index = labels.clone().reshape([b, 1]);

    for k in 0..steps {
        let alpha = cosine_annealed(config.alpha_max, config.alpha_min, k, steps);
        let delta = x_adv.clone().sub(x.clone());
        let norm = sample_norm(delta.clone());

        // Logits of x'_{k-1} with the input gradient of the loss (step 5).
        let (logits, grad) =
            logits_and_input_gradient(model, &x_adv, &label_index, targeted, config.pass_chunk, &grad_device);

        let predicted = logits.argmax(1).reshape([b]);
        let adversarial = if targeted {
            predicted.equal(labels.clone())
        } else {
            predicted.not_equal(labels.clone())
        };

        // Keep the smallest adversarial so far (Alg. 2 step 24; strict, as the reference).
        let improved = adversarial.clone().bool_and(norm.clone().lower(best_norm.clone()));
        best_norm = best_norm.mask_where(improved.clone(), norm.clone());
        best_adv = best_adv.mask_where(improved.clone().reshape([b, 1, 1, 1]).expand(x.dims()), x_adv.clone());
        found = found.bool_or(adversarial.clone());

        // Step 6: delta_k = delta_{k-1} + alpha g / ||g||_2.
        let direction = normalise(grad);
        let delta = delta.add(direction.mul_scalar(alpha));

        // Steps 7-20: the rule's gamma_k, then eps_k, capped at the worst-case norm.
        let gamma = config.norm_update.gamma(&mut rule_state, &adversarial, k, steps);
        let gamma_seen = trace.is_some().then(|| gamma.clone());
        let shrink = eps.clone().mul(gamma.clone().neg().add_scalar(1.0));
        let grow = eps.clone().mul(gamma.add_scalar(1.0));
        eps = grow.mask_where(adversarial, shrink).min_pair(worst_norm.clone());

        // Steps 21-22: project onto the eps-sphere around x, then clip to [0,1].
        let scale = eps.clone().div(sample_norm(delta.clone()).clamp_min(1e-12));
        let mut next = x.clone().add(delta.mul(per_image(scale))).clamp(0.0, 1.0);
        if config.quantize {
            next = next.mul_scalar(255.0).round().div_scalar(255.0);
        }
        x_adv = next;

        if let Some(trace) = trace.as_mut() {
            let shown_best = best_norm.clone().mask_fill(found.clone().bool_not(), f32::INFINITY);
            trace.best_norm.push(to_vec(shown_best));
            trace.norm.push(to_vec(norm));
            trace.eps.push(to_vec(eps.clone()));
            trace.gamma.push(to_vec(gamma_seen.expect("kept for the trace")));
        }
        on_step(k + 1);
    }

    let success: Vec<bool> = found.into_data().iter::<bool>().collect();
    let norms = to_vec(best_norm)
        .into_iter()
        .zip(&success)
        .map(|(n, &ok)| if ok { n } else { f32::INFINITY })
        .collect();
    AttackResult {
        adversarials: best_adv,
        norms,
        success,
        trace,
    }
}

/// Logits of `x_adv` and the gradient of the attack objective with respect to it, on the
/// plain device. Untargeted: ascend the cross-entropy of the true label (m = +1); targeted:
/// descend the cross-entropy of the target (m = -1). The loss is summed over samples, so each
/// sample's gradient is independent of the others: the batch is passed through the model in
/// chunks of `chunk` images (0: all at once), which keeps a CPU's caches warm.
pub(crate) fn logits_and_input_gradient(
    model: &Classifier,
    x_adv: &Tensor<4>,
    label_index: &Tensor<2, Int>,
    targeted: bool,
    chunk: usize,
    grad_device: &Device,
) -> (Tensor<2>, Tensor<4>) {
    let b = x_adv.dims()[0];
    let chunk = if chunk == 0 { b } else { chunk.min(b) };
    let mut all_logits = Vec::with_capacity(b.div_ceil(chunk));
    let mut all_grads = Vec::with_capacity(b.div_ceil(chunk));
    let mut start = 0;
    while start < b {
        let end = (start + chunk).min(b);
        let part = if chunk == b {
            x_adv.clone()
        } else {
            x_adv.clone().narrow(0, start, end - start)
        };
        let labels = if chunk == b {
            label_index.clone()
        } else {
            label_index.clone().narrow(0, start, end - start)
        };
        let leaf = Tensor::from_inner(part).to_device(grad_device).require_grad();
        let logits = model.forward(leaf.clone());
        let picked = log_softmax(logits.clone(), 1).gather(1, Tensor::from_inner(labels).to_device(grad_device));
        let objective = if targeted { picked.sum() } else { picked.sum().neg() };
        let grads = objective.backward();
        let device = x_adv.device();
        all_grads.push(
            leaf.grad(&grads)
                .expect("the input is a tracked leaf")
                .inner()
                .to_device(&device),
        );
        all_logits.push(logits.inner().to_device(&device));
        start = end;
    }
    if all_grads.len() == 1 {
        (
            all_logits.pop().expect("one chunk"),
            all_grads.pop().expect("one chunk"),
        )
    } else {
        (Tensor::cat(all_logits, 0), Tensor::cat(all_grads, 0))
    }
}

/// g / ||g||_2 per sample; a sample whose gradient is exactly zero gets a random direction,
/// as in the reference DDN code.
fn normalise(grad: Tensor<4>) -> Tensor<4> {
    let norm = sample_norm(grad.clone());
    let zero = norm.clone().equal_elem(0.0);
    if zero.clone().any().into_scalar::<bool>() {
        let shape = grad.dims();
        let noise = grad.random_like(Distribution::Normal(0.0, 1.0));
        let grad = grad.mask_where(zero.reshape([shape[0], 1, 1, 1]).expand(shape), noise);
        return normalise(grad);
    }
    grad.div(per_image(norm))
}

fn to_vec(t: Tensor<1>) -> Vec<f32> {
    t.into_data().iter::<f32>().collect()
}

fn model_device(model: &Classifier) -> Device {
    use burn::module::Module;
    model.devices().into_iter().next().expect("a model has parameters")
}
