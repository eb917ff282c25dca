#!/usr/bin/env bash
# The CIFAR-10 and backend measurements reported in the issue notes, in the order they were run
# on the 2-core CPU machine. Results go under runs/ (JSON) and results/ (tables, figures).
source "$(dirname "$0")/setup.sh"

# Issue 5: the small CIFAR-10 CNN (Adam 1e-3, cosine, batch 128, crop+flip, 15 epochs).
$anu train --dataset cifar10 --epochs 15 --out models/cifar-cnn.safetensors --log-json runs/cifar-train.json
$anu eval --dataset cifar10 --model-file models/cifar-cnn.safetensors --json

# Issue 4: CPU backends side by side (needs `pip install torch==2.9.0` for the LibTorch build).
$anu bench --dataset mnist --batch-sizes 100,1000 --json runs/bench-flex.json
# LIBTORCH_USE_PYTORCH=1 cargo build --release --features ndarray,tch --target-dir target/backends
# LD_LIBRARY_PATH=<site-packages>/torch/lib target/backends/release/anu bench --device ndarray|libtorch ...
# python scripts/torch_baseline.py --n 1000 --steps 100 --json runs/torch-baseline.json

# Issue 5: the CIFAR-10 rows of Table 1 (Figure 4 from the 100-iteration rows).
$anu reproduce --dataset cifar10 --model-file models/cifar-cnn.safetensors --out results/cifar10 \
  --untargeted-only --budgets 50,70,100 --fig4-steps 100
