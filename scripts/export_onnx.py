"""Export classifiers to ONNX for `anu`'s ONNX loader, with PyTorch's logits and input
gradients as reference values (a measurement aid: anu itself never runs Python, and the
files it writes are committed so the tests need no torch).

    python3 -m venv /tmp/onnx-venv && /tmp/onnx-venv/bin/pip install torch onnx onnxscript safetensors
    /tmp/onnx-venv/bin/python scripts/export_onnx.py              # writes tests/fixtures/onnx/
    /tmp/onnx-venv/bin/python scripts/export_onnx.py --big-dir target/onnx

Writes into tests/fixtures/onnx/ (each well under 1.5 MB):
  mnist-cnn.onnx, mnist-cnn.json    models/mnist-cnn.safetensors rebuilt in PyTorch and exported;
  resnet.onnx, resnet.json          a small randomly initialised ResNet-style network: batch norm
                                    with non-trivial running statistics, residual adds, strided
                                    and depthwise convolutions, ReLU6, HardSwish, LeakyReLU, a
                                    squeeze-excite gate (HardSigmoid, Mul), max and average
                                    pooling, global average pooling; the JSON also holds the
                                    per-channel mean and std put in front of it;
  resnet-dynamo.onnx                the same network through torch's default (dynamo) exporter;
  softmax.onnx, softmax.json        a tiny classifier ending in a Softmax (its JSON holds the
                                    logits before the Softmax);
  batch-norm.onnx, batch-norm.json  a tiny classifier whose batch norms cannot be folded into a
                                    convolution (after a ReLU, on a value read twice, on a
                                    flattened vector);
  gelu.onnx                         a tiny classifier with a GELU (written with Erf; its reference
                                    logits are onnxruntime's, by scripts/fixtures/make_onnx_op_graphs.py).
and into --big-dir (default target/onnx, not committed: 4.6 MB) cifar-cnn.onnx and into the
fixtures folder cifar-cnn.json.

Each JSON holds `input_shape`, three fixed inputs in [0,1] (`inputs`, flattened), `labels`,
PyTorch's `logits` and `grads`: the gradient of the summed cross-entropy of the logits at
`labels` with respect to the [0,1] input (after the normalisation, where there is one).

With --efficientnet-weights, it exports only EfficientNet-Lite0 as the PyPI package
`efficientnet-lite-pytorch` 0.1.0 builds it (the layout of anu's built-in `efficientnet-lite0`),
with those weights, to --efficientnet-out and its side file of weights (.onnx.data, about 19 MB:
not committed). It goes through torch's default (dynamo) exporter, which writes the package's
TF-style 'same' paddings into the convolutions (the legacy exporter computes them with a
subgraph of shape operators that anu does not run). Its graph takes the normalised image,
(x - 127/255) / (128/255), so `anu` runs it with that normalisation in front:

    /tmp/onnx-venv/bin/pip download --no-deps efficientnet-lite-pytorch==0.1.0 -d /tmp/effpkg
    (cd /tmp/effpkg && unzip -o efficientnet_lite_pytorch-0.1.0-py3-none-any.whl)
    /tmp/onnx-venv/bin/python scripts/export_onnx.py --efficientnet-package /tmp/effpkg \
        --efficientnet-weights $ANU_DATA/models/efficientnet-lite0-57934424.pth \
        --efficientnet-out target/onnx/efficientnet-lite0.onnx
    anu eval --dataset imagenet-sample --model-file target/onnx/efficientnet-lite0.onnx \
        --mean 0.49803922,0.49803922,0.49803922 --std 0.50196078,0.50196078,0.50196078

`cargo test --release --test onnx -- --ignored` then compares that file with the built-in model
and with the package's logits in tests/fixtures/efficientnet-lite0-logits.json.
"""
import argparse
import json
import os

import torch
import torch.nn as nn
import torch.nn.functional as F


class SmallCnn(nn.Module):
    """The C&W/DDN CNN of src/models/small_cnn.rs (valid 3x3 convolutions)."""

    def __init__(self, cin, size, a, b, hidden, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, a, 3)
        self.conv2 = nn.Conv2d(a, a, 3)
        self.conv3 = nn.Conv2d(a, b, 3)
        self.conv4 = nn.Conv2d(b, b, 3)
        final = ((size - 4) // 2 - 4) // 2
        self.fc1 = nn.Linear(b * final * final, hidden)
        self.dropout = nn.Dropout(0.5)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, classes)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.conv3(x))
        x = F.max_pool2d(F.relu(self.conv4(x)), 2)
        x = torch.flatten(x, 1)
        x = self.dropout(F.relu(self.fc1(x)))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def load_small_cnn(path, cin, size, a, b, hidden):
    """Rebuilds a committed SmallCnn from anu's safetensors (burn names, linear weights [in, out])."""
    from safetensors.torch import load_file

    raw = load_file(path)
    model = SmallCnn(cin, size, a, b, hidden)
    state = {}
    for key, value in raw.items():
        name = key.split(".", 1)[1]  # drop the "SmallCnn." prefix
        if name.startswith("fc") and name.endswith("weight"):
            value = value.t().contiguous()
        state[name] = value
    model.load_state_dict(state)
    return model.eval()


class SqueezeExcite(nn.Module):
    def __init__(self, c, r):
        super().__init__()
        self.reduce = nn.Conv2d(c, r, 1)
        self.expand = nn.Conv2d(r, c, 1)

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        s = F.relu(self.reduce(s))
        return x * F.hardsigmoid(self.expand(s))


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.dw = nn.Conv2d(cout, cout, 3, 1, 1, groups=cout, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.se = SqueezeExcite(cout, 4)
        self.short = None
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu6(self.bn1(self.conv1(x)))
        y = self.se(self.bn2(self.dw(y)))
        s = x if self.short is None else self.short(x)
        return F.relu6(y + s)


class TinyResNet(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.stem = nn.Conv2d(3, 24, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(24)
        self.block1 = Block(24, 24, 1)
        self.block2 = Block(24, 48, 2)
        self.block3 = Block(48, 64, 2)
        self.mix = nn.Conv2d(64, 64, 3, 1, dilation=2, padding=2)
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        x = F.hardswish(self.bn(self.stem(x)))
        x = F.max_pool2d(x, 3, 2, 1)
        x = self.block1(x)
        x = self.block2(x)
        x = F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
        x = self.block3(x)
        x = F.leaky_relu(self.mix(x), 0.1) - 0.05 * x
        x = F.adaptive_avg_pool2d(x, 1)
        return self.fc(torch.flatten(x, 1))


def randomise_batch_norms(model, gen):
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            c = m.num_features
            m.weight.data = 0.5 + torch.rand(c, generator=gen)
            m.bias.data = 0.2 * torch.randn(c, generator=gen)
            m.running_mean.data = 0.3 * torch.randn(c, generator=gen)
            m.running_var.data = 0.5 + torch.rand(c, generator=gen)


class SoftmaxNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4 * 6 * 6, 10)

    def logits(self, x):
        return self.fc(torch.flatten(F.relu(self.conv(x)), 1))

    def forward(self, x):
        return F.softmax(self.logits(x), dim=1)


class BatchNormNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(4)
        self.bn3 = nn.BatchNorm1d(4 * 3 * 3)
        self.fc = nn.Linear(4 * 3 * 3, 10)

    def forward(self, x):
        x = self.bn1(F.relu(self.conv1(x)))
        y = self.conv2(x)
        x = F.max_pool2d(self.bn2(y) + y, 2)
        return self.fc(self.bn3(torch.flatten(x, 1)))


class GeluNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.fc = nn.Linear(2 * 6 * 6, 10)

    def forward(self, x):
        return self.fc(torch.flatten(F.gelu(self.conv(x)), 1))


def export(model, shape, path, dynamo=False, fold=True):
    """Exports with a dynamic batch size (legacy exporter) or with torch's defaults (dynamo);
    `fold=False` keeps batch norms as BatchNormalization nodes instead of folding them."""
    example = torch.rand(1, *shape)
    kwargs = {}
    if not dynamo:
        kwargs = dict(
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=17,
            do_constant_folding=fold,
        )
    torch.onnx.export(model, example, path, dynamo=dynamo, **kwargs)
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


def reference(logits_fn, shape, path, seed, mean=None, std=None):
    """Logits and input gradients of the summed cross-entropy for three fixed inputs."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(3, *shape, generator=gen).requires_grad_(True)
    labels = torch.tensor([3, 7, 1])
    z = x
    if mean is not None:
        z = (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
    logits = logits_fn(z)
    F.cross_entropy(logits, labels, reduction="sum").backward()
    record = {
        "input_shape": list(shape),
        "inputs": x.detach().reshape(3, -1).tolist(),
        "labels": labels.tolist(),
        "logits": logits.detach().tolist(),
        "grads": x.grad.reshape(3, -1).tolist(),
    }
    if mean is not None:
        record["mean"] = mean
        record["std"] = std
    with open(path, "w") as f:
        json.dump(record, f)
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


def export_efficientnet_lite0(package_dir, weights, path):
    """EfficientNet-Lite0 of `efficientnet-lite-pytorch` 0.1.0 with the weights `weights`."""
    import sys

    if package_dir:
        sys.path.insert(0, package_dir)
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0", num_classes=1000)
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True), strict=True)
    model.eval()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    export(model, (3, 224, 224), path, dynamo=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-dir", default="tests/fixtures/onnx")
    parser.add_argument("--big-dir", default="target/onnx")
    parser.add_argument("--models-dir", default="models")
    parser.add_argument("--efficientnet-package", default=None,
                        help="folder holding the unzipped efficientnet_lite_pytorch package (if not pip-installed)")
    parser.add_argument("--efficientnet-weights", default=None,
                        help="export only EfficientNet-Lite0 with these weights (efficientnet-lite0-57934424.pth)")
    parser.add_argument("--efficientnet-out", default="target/onnx/efficientnet-lite0.onnx")
    args = parser.parse_args()
    if args.efficientnet_weights:
        export_efficientnet_lite0(args.efficientnet_package, args.efficientnet_weights, args.efficientnet_out)
        return
    os.makedirs(args.out_dir, exist_ok=True)
    os.makedirs(args.big_dir, exist_ok=True)
    out = lambda name: os.path.join(args.out_dir, name)
    torch.manual_seed(0)

    mnist = load_small_cnn(os.path.join(args.models_dir, "mnist-cnn.safetensors"), 1, 28, 32, 64, 200)
    export(mnist, (1, 28, 28), out("mnist-cnn.onnx"))
    reference(mnist, (1, 28, 28), out("mnist-cnn.json"), seed=1)

    cifar = load_small_cnn(os.path.join(args.models_dir, "cifar-cnn.safetensors"), 3, 32, 64, 128, 256)
    export(cifar, (3, 32, 32), os.path.join(args.big_dir, "cifar-cnn.onnx"))
    reference(cifar, (3, 32, 32), out("cifar-cnn.json"), seed=2)

    gen = torch.Generator().manual_seed(3)
    resnet = TinyResNet()
    randomise_batch_norms(resnet, gen)
    resnet.eval()
    mean, std = [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]
    export(resnet, (3, 32, 32), out("resnet.onnx"), fold=False)
    export(resnet, (3, 32, 32), out("resnet-dynamo.onnx"), dynamo=True)
    reference(resnet, (3, 32, 32), out("resnet.json"), seed=4, mean=mean, std=std)

    soft = SoftmaxNet().eval()
    export(soft, (1, 8, 8), out("softmax.onnx"))
    reference(soft.logits, (1, 8, 8), out("softmax.json"), seed=5)

    export(GeluNet().eval(), (1, 8, 8), out("gelu.onnx"))

    export_batch_norm_net(out)


def export_batch_norm_net(out):
    gen = torch.Generator().manual_seed(6)
    net = BatchNormNet()
    randomise_batch_norms(net, gen)
    net.eval()
    export(net, (1, 8, 8), out("batch-norm.onnx"), fold=False)
    reference(net, (1, 8, 8), out("batch-norm.json"), seed=7)


if __name__ == "__main__":
    main()
