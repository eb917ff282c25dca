"""PyTorch baseline for `anu bench` / `anu attack` on the same machine (a measurement aid only;
anu itself never runs Python).

Loads anu's MNIST CNN weights into an equivalent torch module and times
  1. forward + input gradient at batch 1000 (images x iterations per second), and
  2. Foolbox 3's DDN (the PyTorch tool people use) for 100 steps on the first N test images,
reporting mean/median L2 and seconds, to set beside `anu bench` and `anu attack --attack ddn`.

    pip install torch==2.9.0 foolbox safetensors numpy
    python scripts/torch_baseline.py --data-dir ../shared/data --model models/mnist-cnn.safetensors
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


class SmallCnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3)
        self.conv2 = nn.Conv2d(32, 32, 3)
        self.conv3 = nn.Conv2d(32, 64, 3)
        self.conv4 = nn.Conv2d(64, 64, 3)
        self.fc1 = nn.Linear(1024, 200)
        self.fc2 = nn.Linear(200, 200)
        self.fc3 = nn.Linear(200, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv2(F.relu(self.conv1(x)))), 2)
        x = F.max_pool2d(F.relu(self.conv4(F.relu(self.conv3(x)))), 2)
        x = F.relu(self.fc1(x.flatten(1)))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def load_model(path):
    tensors = load_file(path)
    model = SmallCnn()
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


def time_forward_input_grad(model, x, y, reps, chunk):
    def once():
        for start in range(0, len(x), chunk):
            leaf = x[start:start + chunk].clone().requires_grad_(True)
            loss = F.cross_entropy(model(leaf), y[start:start + chunk], reduction="sum")
            (grad,) = torch.autograd.grad(loss, leaf)
    once()
    t0 = time.perf_counter()
    for _ in range(reps):
        once()
    return len(x) * reps / (time.perf_counter() - t0)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data-dir", default=os.environ.get("ANU_DATA", "data"))
    p.add_argument("--model", default="models/mnist-cnn.safetensors")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--attack-batch", type=int, default=0, help="Foolbox batch size (0 = all N at once)")
    p.add_argument("--json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    for param in (model := load_model(args.model)).parameters():
        param.requires_grad_(False)
    x, y = load_mnist_test(args.data_dir, args.n)
    with torch.no_grad():
        accuracy = (model(x).argmax(1) == y).float().mean().item()
    result = {"torch": torch.__version__, "threads": args.threads, "n": args.n, "clean_accuracy": accuracy}
    for chunk in (args.n, 64):
        result[f"forward_input_grad_img_per_s_chunk{chunk}"] = time_forward_input_grad(model, x, y, 3, chunk)

    import foolbox as fb
    fmodel = fb.PyTorchModel(model, bounds=(0, 1))
    attack = fb.attacks.DDNAttack(init_epsilon=1.0, steps=args.steps, gamma=0.05)
    batch = args.attack_batch or args.n
    t0 = time.perf_counter()
    parts = [attack(fmodel, x[i:i + batch], y[i:i + batch], epsilons=None) for i in range(0, args.n, batch)]
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
        "foolbox_ddn_median_l2": float(np.median(norms.numpy())),
    })
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
