//! EfficientNet-Lite0 from its pretrained PyTorch checkpoint (in the data folder): logits equal
//! PyTorch's on the reference inputs of `tests/fixtures/efficientnet-lite0-logits.json`
//! (made by `scripts/baselines/efficientnet_lite0_reference.py`), the ImageNet sample loads, and a
//! checkpoint of another architecture is refused with the tensors named.

mod common;

use anu::attack::AttackedModel;
use anu::data::{self, DatasetName, Split};
use anu::models::{Architecture, weights};
use burn::prelude::*;

fn checkpoint() -> std::path::PathBuf {
    common::data_dir().join("models/efficientnet-lite0-57934424.pth")
}

#[test]
fn logits_match_pytorch_on_the_reference_images() {
    let device = Device::flex();
    let loaded = weights::load_as(&checkpoint(), Some(Architecture::EfficientNetLite0), &device).unwrap();
    assert_eq!(loaded.sha256[..8], *"57934424", "the file name carries its hash prefix");
    let fixture: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/efficientnet-lite0-logits.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let expected: Vec<Vec<f64>> = serde_json::from_value(fixture["logits"].clone()).unwrap();
    let pixels: Vec<f32> = (0..3).flat_map(common::efficientnet_reference_image).collect();
    let images =
        Tensor::<1>::from_data(TensorData::new(pixels, [3 * 3 * 224 * 224]), &device).reshape([3, 3, 224, 224]);
    let plain: Vec<f32> = loaded
        .model
        .valid()
        .forward(images.clone())
        .unwrap()
        .into_data()
        .iter::<f32>()
        .collect();
    let mut worst = 0.0f64;
    for (k, row) in expected.iter().enumerate() {
        for (j, &e) in row.iter().enumerate() {
            worst = worst.max((plain[k * 1000 + j] as f64 - e).abs());
        }
    }
    eprintln!("largest logit difference from PyTorch: {worst:.2e}");
    assert!(worst < 1e-3, "largest logit difference from PyTorch: {worst}");
    // The attacks' copy (autodiff device, batch norm in evaluation mode) gives the same logits.
    let attacked = AttackedModel::new(&loaded.model, &device);
    let ad = device.clone().autodiff();
    let via_attack: Vec<f32> = attacked
        .classifier()
        .forward(Tensor::from_inner(images).to_device(&ad))
        .unwrap()
        .inner()
        .into_data()
        .iter::<f32>()
        .collect();
    let gap = plain
        .iter()
        .zip(&via_attack)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(gap < 1e-4, "{gap}");
}

#[test]
fn a_checkpoint_of_another_architecture_is_refused_with_the_tensors_named() {
    let err = weights::load_as(&checkpoint(), Some(Architecture::MnistCnn), &Device::flex())
        .unwrap_err()
        .to_string();
    assert!(err.contains("efficientnet-lite0-57934424.pth"), "{err}");
    assert!(
        err.contains("missing [") && err.contains("conv1") && err.contains("unexpected [") && err.contains("blocks.15"),
        "{err}"
    );
    // Without --model the architecture is unknown.
    let err = weights::load_as(&checkpoint(), None, &Device::flex())
        .unwrap_err()
        .to_string();
    assert!(err.contains("--model"), "{err}");
}

#[test]
fn the_imagenet_sample_loads_as_224_pixel_rgb_with_labels() {
    let data = data::load(DatasetName::ImagenetSample, &common::data_dir(), Split::Test).unwrap();
    assert_eq!(data.len(), 200);
    assert_eq!(data.image_shape, [3, 224, 224]);
    assert_eq!(data.num_classes, 1000);
    assert_eq!(
        data.labels,
        (0..200).collect::<Vec<u16>>(),
        "one image per class 0..199"
    );
    // The greyscale image (an Airedale) comes out with three equal channels.
    let names = DatasetName::ImagenetSample.info().class_names(&common::data_dir());
    assert_eq!(names[0], "tench");
    let airedale = names.iter().position(|n| n == "Airedale").unwrap();
    let img = data.image(airedale);
    let plane = 224 * 224;
    assert!(img[..plane] == img[plane..2 * plane] && img[..plane] == img[2 * plane..]);
    assert!(data::load(DatasetName::ImagenetSample, &common::data_dir(), Split::Train).is_err());
}
