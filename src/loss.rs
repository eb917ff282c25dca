//! The losses that training and benchmarks differentiate: the mean cross-entropy, and the
//! adversarial-training loss of the paper's Eq. 6-7 built from it.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

/// Mean cross-entropy of `logits` against `labels`.
pub fn cross_entropy(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    let b = labels.dims()[0];
    log_softmax(logits, 1).gather(1, labels.reshape([b, 1])).mean().neg()
}

/// The training loss: Eq. 6, `beta J(x, y) + (1 - beta) J(x', y)`, from the logits of the
/// clean and the adversarial images; with `beta = 0` only the adversarial term (Eq. 7) and
/// the clean logits are not needed.
pub fn training_loss(
    clean_logits: Option<Tensor<2>>,
    adversarial_logits: Tensor<2>,
    labels: Tensor<1, Int>,
    beta: f64,
) -> Tensor<1> {
    let adversarial = cross_entropy(adversarial_logits, labels.clone());
    match clean_logits {
        Some(clean) if beta > 0.0 => cross_entropy(clean, labels)
            .mul_scalar(beta)
            .add(adversarial.mul_scalar(1.0 - beta)),
        _ => adversarial,
    }
}
