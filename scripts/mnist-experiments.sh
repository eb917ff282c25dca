#!/usr/bin/env bash
# The MNIST measurements reported in the issue notes, in the order they were run on the
# 2-core CPU machine. Each step writes its results under runs/ (JSON) or results/ (tables,
# figures); rerunning `reproduce` skips rows already saved.
set -euo pipefail
cd "$(dirname "$0")/.."
export ANU_DATA="${ANU_DATA:-../shared/data}"
anu=./target/release/anu
cargo build --release
mkdir -p runs results

# Issue 3: DDN-100, ANU-70, ANU-100 on the first 1000 test images, untargeted.
for spec in ddn:100 anu:70 anu:100; do
  $anu attack --dataset mnist --model-file models/mnist-cnn.safetensors --attack "${spec%%:*}" --steps "${spec##*:}" \
    --n 1000 --json "runs/attack-${spec%%:*}-${spec##*:}.json"
done

# Issue 4: throughput table.
$anu bench --dataset mnist --model-file models/mnist-cnn.safetensors --batch-sizes 100,1000 --json runs/bench.json

# Issue 4: Table 1 in full (N = 1000, Figure 4 from the 1000-iteration rows), then Table 2
# on the first 100 images (900 targeted attacks) at the budgets that fit.
$anu reproduce --dataset mnist --out results/mnist --untargeted-only
$anu reproduce --dataset mnist --out results/mnist-targeted-n100 --targeted-only --n 100 --budgets 50,85,100,300

# Issue 5 (reduced): adversarial fine-tuning of the base model on the first 10000 training
# images for one epoch, ANU-70 vs DDN-100, eps cap 2.4, then robustness of all three models.
for spec in anu:70 ddn:100; do
  $anu train --dataset mnist --init-from models/mnist-cnn.safetensors --adversarial "${spec%%:*}" \
    --attack-steps "${spec##*:}" --max-norm 2.4 --epochs 1 --train-subset 10000 --optimizer sgd --lr 0.01 \
    --schedule constant --out "runs/mnist-at-${spec%%:*}${spec##*:}.safetensors" --log-json "runs/mnist-at-${spec%%:*}${spec##*:}.json"
done
$anu robustness --dataset mnist --model-file models/mnist-cnn.safetensors --model-file runs/mnist-at-ddn100.safetensors \
  --model-file runs/mnist-at-anu70.safetensors --attack anu --steps 1000 --n 200 --out results/mnist-robustness
