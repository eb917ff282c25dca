//! Clean accuracy of a classifier on a data set.

use burn::prelude::*;

use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::models::Classifier;

/// Fraction and count of correctly classified images, evaluated in batches of `batch_size`
/// (at least 1) without autodiff. An empty data set is refused: it has no accuracy, and so is
/// a model that gives a NaN or infinite logit for any image ([`Error::NonFinite`]): its
/// predictions mean nothing.
pub fn accuracy(model: &Classifier, data: &Dataset, device: &Device, batch_size: usize) -> Result<(f64, usize)> {
    if batch_size == 0 {
        return Err(Error::Invalid("the evaluation batch size must be at least 1".into()));
    }
    if data.is_empty() {
        return Err(Error::Invalid("no images to evaluate: the data set is empty".into()));
    }
    let model = model.valid().to_device(&device.clone().inner());
    let mut correct = 0usize;
    let mut start = 0;
    while start < data.len() {
        let end = (start + batch_size).min(data.len());
        let (images, labels) = data.batch(start, end, &device.clone().inner());
        let logits = model.forward(images)?;
        let non_finite = logits
            .clone()
            .is_finite()
            .bool_not()
            .any_dim(1)
            .int()
            .sum()
            .into_scalar::<i64>() as usize;
        if non_finite > 0 {
            return Err(Error::NonFinite {
                what: "logits",
                images: non_finite,
                of: end - start,
            });
        }
        let predicted = logits.argmax(1).reshape([end - start]);
        correct += predicted.equal(labels).int().sum().into_scalar::<i64>() as usize;
        start = end;
    }
    Ok((correct as f64 / data.len() as f64, correct))
}

/// Predicted class of every image.
pub fn predictions(model: &Classifier, images: Tensor<4>) -> Result<Vec<i64>> {
    let model = model.valid().to_device(&images.device().inner());
    let b = images.dims()[0];
    Ok(model
        .forward(images.inner())?
        .argmax(1)
        .reshape([b])
        .into_data()
        .iter::<i64>()
        .collect())
}
