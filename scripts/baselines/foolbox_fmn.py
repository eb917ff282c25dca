"""Foolbox 3.3.4's FMN-L2 on anu's MNIST or CIFAR-10 CNN (a measurement aid only; anu itself never
runs Python).

What it measures: Foolbox's `fb.attacks.L2FMNAttack(steps=S)` (all other arguments at their
defaults, `epsilons=None`, untargeted) on the first N test images of --dataset, for each S in
--steps, on the CPU (or --device cuda), in batches of --batch images, to set beside
`anu attack --attack fmn` / `anu reproduce`.
Per budget it records the success count (an image counts as a success when the returned point is
misclassified by the model; images the model already misclassifies count as norm 0, as in anu),
mean and median L2 of the successes, wall seconds, per-image L2 norms (null for failures) and the
failing indices, plus, on MNIST, Foolbox's norms on a list of image indices of interest.

Foolbox 3.3.4's L2FMNAttack.project computes `factor = minimum(1, norms / norms)`, i.e. always 1,
so the L2-ball projection is a no-op (epsilon is computed but never used). To separate that bug
from the rest of the algorithm the script also runs, under "variant_fixed_projection", a subclass
whose only change is a correct projection of delta onto the L2 ball of radius epsilon
(delta * min(1, epsilon / ||delta||)). The main "foolbox" results are unmodified Foolbox.

Run (model loading is reused from scripts/baselines/torch_baseline.py):

    pip install torch==2.9.0 foolbox==3.3.4 safetensors numpy
    python scripts/baselines/foolbox_fmn.py --data-dir ../shared/data --model models/mnist-cnn.safetensors \
        --out docs/results/fmn/mnist-3way-n200/foolbox-fmn.json
    python scripts/baselines/foolbox_fmn.py --data-dir ../shared/data --dataset cifar10 \
        --model models/cifar-cnn.safetensors --n 1000 --steps 50,100 --out foolbox-fmn-cifar10.json

Writes the JSON given by --out (default docs/results/fmn/mnist-3way-n200/foolbox-fmn.json) and
prints a summary.
"""
import argparse
import inspect
import json
import os
import platform
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_baseline import load_cifar10_test, load_mnist_test, load_model  # noqa: E402

# MNIST test images whose norms the MNIST comparison looked at one by one.
MNIST_WATCH = [8, 25, 62, 73, 95, 115, 160, 175, 184]


def run_attack(attack, fmodel, model, x, y, batch):
    t0 = time.perf_counter()
    advs = []
    for i in range(0, len(x), batch):
        _, clipped, _ = attack(fmodel, x[i:i + batch], y[i:i + batch], epsilons=None)
        advs.append(clipped)
    advs = torch.cat(advs)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        success = model(advs).argmax(1) != y
    norms = (advs - x).flatten(1).norm(dim=1)
    per_image = [float(n) if s else None for n, s in zip(norms.tolist(), success.tolist())]
    ok = norms[success].cpu().numpy()
    return {
        "success_count": int(success.sum()),
        "success_rate": float(success.float().mean()),
        "mean_l2_successes": float(ok.mean()) if len(ok) else None,
        "median_l2_successes": float(np.median(ok)) if len(ok) else None,
        "seconds": seconds,
        "failures": [i for i, s in enumerate(success.tolist()) if not s],
        "per_image_l2": per_image,
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data-dir", default=os.environ.get("ANU_DATA", "data"))
    p.add_argument("--dataset", choices=["mnist", "cifar10"], default="mnist")
    p.add_argument("--model", default="models/mnist-cnn.safetensors")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--steps", default="50,100")
    p.add_argument("--batch", type=int, default=200)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="torch device: cpu, or cuda for an NVIDIA GPU")
    p.add_argument("--out", default="docs/results/fmn/mnist-3way-n200/foolbox-fmn.json")
    p.add_argument("--no-variant", action="store_true", help="skip the fixed-projection variant")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    import eagerpy as ep
    import foolbox as fb
    from foolbox.devutils import atleast_kd, flatten

    class L2FMNFixedProjection(fb.attacks.L2FMNAttack):
        """Foolbox's L2FMN with only the L2-ball projection corrected."""

        def project(self, x, x0, epsilon):
            delta = x - x0
            norms = ep.maximum(flatten(delta).norms.l2(axis=-1), 1e-12)
            factor = atleast_kd(ep.minimum(1, epsilon / norms), x.ndim)
            return x0 + delta * factor

    model = load_model(args.model, args.dataset).to(args.device)
    for param in model.parameters():
        param.requires_grad_(False)
    load = load_mnist_test if args.dataset == "mnist" else load_cifar10_test
    x, y = (t.to(args.device) for t in load(args.data_dir, args.n))
    watch = MNIST_WATCH if args.dataset == "mnist" else []
    with torch.no_grad():
        clean_wrong = (model(x).argmax(1) != y).nonzero().flatten().tolist()
    fmodel = fb.PyTorchModel(model, bounds=(0, 1), device=args.device)

    budgets = [int(s) for s in args.steps.split(",")]
    probe = fb.attacks.L2FMNAttack(steps=budgets[0])
    settings = {
        "class": "foolbox.attacks.L2FMNAttack",
        "constructor_args": "steps=S only; everything else Foolbox's default",
        "max_stepsize": probe.max_stepsize,
        "min_stepsize": probe.min_stepsize,
        "stepsize_schedule": "cosine from max_stepsize (step 0) to min_stepsize (as i -> steps)",
        "gamma": probe.gamma,
        "gamma_final": 0.001,
        "gamma_schedule": "cosine from gamma to 0.001",
        "binary_search_steps": probe.binary_search_steps,
        "binary_search_ran": False,
        "init_attack": repr(probe.init_attack),
        "starting_points": None,
        "start": "delta = 0 (no init attack, no starting points, so the binary search is skipped)",
        "epsilons": None,
        "criterion": "Misclassification(labels) (untargeted)",
        "bounds": [0, 1],
        "l2_projection_note": (
            "L2FMNAttack.project computes factor = minimum(1, norms / norms) == 1 (and norms of x, "
            "not x - x0), so no projection happens; epsilon is updated but never used"),
        "project_source": inspect.getsource(fb.attacks.L2FMNAttack.project),
    }

    result = {
        "what": f"Foolbox L2FMNAttack, untargeted, first N {args.dataset} test images, {args.device}",
        "dataset": args.dataset,
        "n": args.n,
        "batch": args.batch,
        "threads": args.threads,
        "model": args.model,
        "clean_misclassified_indices": clean_wrong,
        "watch_indices": watch,
        "settings": settings,
        "versions": {
            "foolbox": fb.__version__,
            "eagerpy": ep.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "foolbox": {},
    }
    if not args.no_variant:
        result["variant_fixed_projection"] = {
            "note": "subclass of L2FMNAttack whose project() is delta * min(1, epsilon/||delta||); "
                    "NOT Foolbox's behaviour, shown only to isolate the projection bug",
        }

    for s in budgets:
        torch.manual_seed(0)
        r = run_attack(fb.attacks.L2FMNAttack(steps=s), fmodel, model, x, y, args.batch)
        r["watch_l2"] = {str(i): r["per_image_l2"][i] for i in watch if i < args.n}
        result["foolbox"][str(s)] = r
        print(f"foolbox L2FMN steps={s}: success {r['success_count']}/{args.n} "
              f"mean {r['mean_l2_successes']:.4f} median {r['median_l2_successes']:.4f} "
              f"{r['seconds']:.2f}s failures {r['failures']}")
        print("  watch:", {k: (None if v is None else round(v, 4)) for k, v in r["watch_l2"].items()})
        if not args.no_variant:
            v = run_attack(L2FMNFixedProjection(steps=s), fmodel, model, x, y, args.batch)
            v["watch_l2"] = {str(i): v["per_image_l2"][i] for i in watch if i < args.n}
            result["variant_fixed_projection"][str(s)] = v
            print(f"fixed-projection variant steps={s}: success {v['success_count']}/{args.n} "
                  f"mean {v['mean_l2_successes']:.4f} median {v['median_l2_successes']:.4f} "
                  f"{v['seconds']:.2f}s failures {v['failures']}")
            print("  watch:", {k: (None if w is None else round(w, 4)) for k, w in v["watch_l2"].items()})

    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
