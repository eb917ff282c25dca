//! PyTorch checkpoints (no data folder): tiny state dicts in both pickle formats
//! (`tests/fixtures/tiny-*.pth`, made by `scripts/fixtures/make_pytorch_fixtures.py`) load into a burn
//! module with the same names less their underscores; one that does not fit is refused with
//! every missing, unexpected and wrong-shaped tensor named.

use anu::models::weights::read_pytorch_into;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};
use burn::prelude::*;

#[derive(Module, Debug)]
struct Block {
    depthwise_conv: Conv2d,
}

#[derive(Module, Debug)]
struct Tiny {
    conv: Conv2d,
    bn: BatchNorm,
    blocks: Vec<Block>,
    fc: Linear,
}

fn tiny(device: &Device) -> Tiny {
    Tiny {
        conv: Conv2dConfig::new([2, 3], [3, 3]).with_bias(false).init(device),
        bn: BatchNormConfig::new(3).init(device),
        blocks: (0..2)
            .map(|_| Block {
                depthwise_conv: Conv2dConfig::new([3, 3], [3, 3])
                    .with_groups(3)
                    .with_bias(false)
                    .init(device),
            })
            .collect(),
        fc: LinearConfig::new(3, 4).init(device),
    }
}

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().iter::<f32>().collect()
}

/// (arange(n) + offset) / 100, the fixture script's rule.
fn rule(n: usize, offset: usize) -> Vec<f32> {
    (0..n).map(|i| (i + offset) as f32 / 100.0).collect()
}

#[test]
fn both_pickle_formats_load_with_their_values_in_place() {
    let device = Device::flex();
    for file in ["tiny-legacy.pth", "tiny-zip.pth"] {
        let mut model = tiny(&device);
        read_pytorch_into(&mut model, &fixture(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(values(model.conv.weight.val()), rule(54, 0), "{file}");
        assert_eq!(values(model.bn.gamma.val()), rule(3, 100), "{file}: weight -> gamma");
        assert_eq!(values(model.bn.beta.val()), rule(3, 200), "{file}: bias -> beta");
        assert_eq!(values(model.bn.running_mean.value()), rule(3, 300), "{file}");
        assert_eq!(values(model.bn.running_var.value()), rule(3, 400), "{file}");
        assert_eq!(
            values(model.blocks[1].depthwise_conv.weight.val()),
            rule(27, 600),
            "{file}"
        );
        // PyTorch's linear weight is [out, in]; burn's is [in, out].
        let fc = values(model.fc.weight.val());
        let torch_fc = rule(12, 700);
        for o in 0..4 {
            for i in 0..3 {
                assert_eq!(fc[i * 4 + o], torch_fc[o * 3 + i], "{file}: fc[{i},{o}]");
            }
        }
        assert_eq!(values(model.fc.bias.as_ref().unwrap().val()), rule(4, 800), "{file}");
    }
}

#[test]
fn a_checkpoint_that_does_not_fit_is_refused_with_every_tensor_named() {
    let mut model = tiny(&Device::flex());
    let err = read_pytorch_into(&mut model, &fixture("tiny-wrong.pth"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("tiny-wrong.pth"), "{err}");
    assert!(err.contains("running_var"), "missing tensor not named: {err}");
    assert!(err.contains("extra.weight"), "unexpected tensor not named: {err}");
    assert!(
        err.contains("fc.weight") && err.contains("fc.bias"),
        "wrong shapes not named: {err}"
    );

    let garbage = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(garbage.path(), b"definitely not a pickle").unwrap();
    let err = read_pytorch_into(&mut model, garbage.path()).unwrap_err().to_string();
    assert!(err.contains("PyTorch"), "{err}");
    let err = read_pytorch_into(&mut model, &fixture("absent.pth"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("absent.pth"), "{err}");
}
