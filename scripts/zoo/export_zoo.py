"""Export the architectures people attack (torchvision's classifiers, and RobustBench's CIFAR-10
ones read from its package without installing its dependencies) to ONNX with both of
torch.onnx.export's exporters, with PyTorch's logits and input gradients as reference values,
for `tests/onnx_zoo.rs` (a measurement aid: anu itself never runs Python).

    python3 -m venv /tmp/onnx-venv && /tmp/onnx-venv/bin/pip install torch torchvision onnx onnxscript
    /tmp/onnx-venv/bin/pip download --no-deps robustbench -d /tmp/rb && (cd /tmp/rb && unzip -o robustbench-*.whl)
    /tmp/onnx-venv/bin/python scripts/zoo/export_zoo.py --out target/zoo [--robustbench /tmp/rb] [--only resnet18,vit_b_16]
    ANU_ZOO_DIR=target/zoo cargo test --release --test onnx_zoo -- --ignored --nocapture

Weights are random (seeded), batch-norm running statistics are set to non-trivial values, the
last linear layer is redrawn so that the logits spread over about one unit, and the labels are
PyTorch's own predictions, so the images start classified right and an attack has
something to do. Each export is written as NAME-EXPORTER.onnx (legacy: opset 17 with a free batch
dimension; dynamo: torch's default exporter with a free batch dimension) beside NAME-EXPORTER.json:
`input_shape`, two inputs (`inputs`, flattened, each value k/255 so that they are exact 8-bit
pixels), `labels`, `logits`, `grads` (of the summed cross-entropy at `labels`), the torch version
and the exporter; `grads_f64_cosine`, the cosine between PyTorch's float32 gradient and its own
float64 one (near 1 where the gradient is well defined; far below 1 where max-pooling windows hold
ties, as in GoogLeNet with these weights, so that no float32 gradient can be compared there);
and `ddn_steps` / `ddn_norms`, the norms that a plain PyTorch DDN (Rony et al.'s rule, the settings
of `anu`'s DDN: eps_0 = 1, gamma = 0.05, alpha annealed from 1 to 0.01) finds in that many
iterations (null where it finds none). A model that an exporter cannot export is listed in
`failed.json` with the reason.
"""
import argparse
import copy
import importlib.util
import json
import math
import os
import sys
import traceback

import torch
import torchvision

IMAGENET = [
    ("resnet18", {}),
    ("resnet50", {}),
    ("wide_resnet50_2", {}),
    ("mobilenet_v2", {}),
    ("mobilenet_v3_large", {}),
    ("efficientnet_b0", {}),
    ("densenet121", {}),
    ("vgg11_bn", {}),
    ("squeezenet1_1", {}),
    ("regnet_y_400mf", {}),
    ("googlenet", {"aux_logits": False, "init_weights": True}),
    ("inception_v3", {"aux_logits": False, "init_weights": True}),
    ("alexnet", {}),
    ("shufflenet_v2_x1_0", {}),
    ("convnext_tiny", {}),
    ("vit_b_16", {}),
    ("swin_t", {}),
]


def set_batch_norm_statistics(model, generator):
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            if m.affine:
                m.weight.data.copy_(1 + 0.1 * torch.randn(n, generator=generator))
                m.bias.data.copy_(0.1 * torch.randn(n, generator=generator))


def fit_classifier(model, shape, generator):
    """Redraws the last linear layer (torchvision's ViT starts it at zero) so that the logits of
    random images spread over about one unit: the labels are then the model's own predictions
    with small margins, as a trained classifier's near its decision boundary."""
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    if not last:
        return
    fc = last[-1]
    fc.weight.copy_(torch.randn(fc.weight.shape, generator=generator) / fc.in_features**0.5)
    if fc.bias is not None:
        fc.bias.zero_()
    x = torch.rand(4, *shape, generator=generator)
    spread = model(x).std(dim=1).mean().clamp_min(1e-12)
    fc.weight.div_(spread)


def reference(model, shape, generator):
    x = torch.randint(0, 256, (2, *shape), generator=generator).float() / 255.0
    x.requires_grad_(True)
    logits = model(x)
    labels = logits.argmax(1)
    loss = torch.nn.functional.cross_entropy(logits, labels, reduction="sum")
    (grads,) = torch.autograd.grad(loss, x)
    return x.detach(), labels, logits.detach(), grads


def f64_cosine(model, x, labels, grads):
    """Cosine between `grads` and PyTorch's float64 gradient at the same point."""
    m64 = copy.deepcopy(model).double()
    x64 = x.double().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(m64(x64), labels, reduction="sum")
    (g64,) = torch.autograd.grad(loss, x64)
    return torch.nn.functional.cosine_similarity(g64.flatten(), grads.double().flatten(), dim=0).item()


def ddn(model, x, labels, steps, gamma=0.05, init_eps=1.0, alpha_max=1.0, alpha_min=0.01):
    """Best adversarial L2 norm per image of a plain DDN (None where none is found)."""
    b = x.shape[0]
    delta = torch.zeros_like(x, requires_grad=True)
    eps = torch.full((b,), init_eps)
    best = torch.full((b,), math.inf)
    for k in range(steps):
        alpha = alpha_min + 0.5 * (alpha_max - alpha_min) * (1 + math.cos(math.pi * k / steps))
        logits = model(x + delta)
        adversarial = logits.argmax(1) != labels
        loss = torch.nn.functional.cross_entropy(logits, labels, reduction="sum")
        (g,) = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            norm = delta.flatten(1).norm(dim=1)
            best = torch.where(adversarial & (norm < best), norm, best)
            delta += alpha * g / g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
            eps = torch.where(adversarial, eps * (1 - gamma), eps * (1 + gamma))
            delta *= (eps / delta.flatten(1).norm(dim=1).clamp_min(1e-12)).view(-1, 1, 1, 1)
            delta.copy_((x + delta).clamp(0, 1) - x)
    return [None if math.isinf(v) else v for v in best.tolist()]


def export(model, shape, path, exporter):
    x = torch.rand(2, *shape)
    if exporter == "legacy":
        torch.onnx.export(
            model,
            (x,),
            path,
            dynamo=False,
            opset_version=17,
            input_names=["images"],
            output_names=["logits"],
            dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
        )
    else:
        batch = torch.export.Dim("batch", min=1, max=1024)
        program = torch.onnx.export(model, (x,), dynamo=True, dynamic_shapes=({0: batch},))
        program.save(path)


def robustbench_models(folder):
    """RobustBench's CIFAR-10 architectures, imported from the unpacked wheel's files."""
    base = os.path.join(folder, "robustbench", "model_zoo", "architectures")

    def load(name):
        spec = importlib.util.spec_from_file_location(f"rb_{name}", os.path.join(base, f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module

    wrn = load("wide_resnet")
    resnet = load("resnet")
    dm = load("dm_wide_resnet")
    return [
        ("rb_wrn_28_10", lambda: wrn.WideResNet(depth=28, widen_factor=10)),
        ("rb_preact_resnet18", lambda: resnet.PreActResNet18()),
        ("rb_dm_wrn_28_10", lambda: dm.DMWideResNet(num_classes=10, depth=28, width=10)),
        ("rb_dm_wrn_28_10_silu", lambda: dm.DMWideResNet(num_classes=10, depth=28, width=10, activation_fn=dm.Swish)),
    ]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="target/zoo")
    p.add_argument("--robustbench", help="folder of the unpacked robustbench wheel")
    p.add_argument("--only", help="comma-separated model names")
    p.add_argument("--exporters", default="legacy,dynamo")
    p.add_argument("--ddn-steps", type=int, default=50, help="iterations of the reference DDN")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    builds = [(n, lambda n=n, kw=kw: getattr(torchvision.models, n)(weights=None, **kw), (3, 224, 224)) for n, kw in IMAGENET]
    if args.robustbench:
        builds += [(n, f, (3, 32, 32)) for n, f in robustbench_models(args.robustbench)]
    only = set(args.only.split(",")) if args.only else None
    failed = {}
    for name, build, shape in builds:
        if only and name not in only:
            continue
        generator = torch.Generator().manual_seed(0)
        torch.manual_seed(0)
        model = build().eval()
        with torch.no_grad():
            set_batch_norm_statistics(model, generator)
            fit_classifier(model, shape, generator)
        x, labels, logits, grads = reference(model, shape, generator)
        conditioning = f64_cosine(model, x, labels, grads)
        ddn_norms = ddn(model, x, labels, args.ddn_steps)
        for exporter in args.exporters.split(","):
            stem = os.path.join(args.out, f"{name}-{exporter}")
            try:
                export(model, shape, stem + ".onnx", exporter)
            except Exception as e:  # an export failure is a finding, not a crash
                failed[f"{name}-{exporter}"] = f"{type(e).__name__}: {e}"[:2000]
                traceback.print_exc()
                continue
            record = {
                "model": name,
                "exporter": exporter,
                "torch": torch.__version__,
                "torchvision": torchvision.__version__,
                "input_shape": list(shape),
                "inputs": x.reshape(2, -1).tolist(),
                "labels": labels.tolist(),
                "logits": logits.tolist(),
                "grads": grads.reshape(2, -1).tolist(),
                "grads_f64_cosine": conditioning,
                "ddn_steps": args.ddn_steps,
                "ddn_norms": ddn_norms,
            }
            with open(stem + ".json", "w") as f:
                json.dump(record, f)
            print(f"{stem}.onnx", flush=True)
    with open(os.path.join(args.out, "failed.json"), "w") as f:
        json.dump(failed, f, indent=1)


if __name__ == "__main__":
    main()
