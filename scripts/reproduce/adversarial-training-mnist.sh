#!/usr/bin/env bash
# MNIST adversarial training with ANU-70 and DDN-100, then robust accuracy against the L2 norm
# (Figures 5-6), as reported in docs/RESULTS.md under "Adversarial training and robustness".
#
# A reduced configuration that fits a 2-core CPU: both models start from the committed base model
# and are fine-tuned for one epoch on the first 10000 training images, SGD lr 0.01 (constant),
# batch 128, perturbations capped at L2 norm 2.4, loss Eq. 7 (adversarial loss only).
# Needs the MNIST files under $ANU_DATA/mnist (scripts/setup.sh builds anu and sets the data folder).
source "$(dirname "$0")/../setup.sh"

# Fine-tuning -> runs/mnist-at-anu70.safetensors and runs/mnist-at-ddn100.safetensors, with per-epoch
# logs (clean accuracy, time, mean perturbation norm) in runs/mnist-at-*.json. The committed
# models/mnist-at-anu70.safetensors and models/mnist-at-ddn100.safetensors were made with these
# commands (468 s and 650 s on machine A; those logs were not kept); a later run of them, with its
# logs, evaluations and robustness curves, is docs/results/paper/mnist-adv-training (261 s and 365 s on
# machine D).
for spec in anu:70 ddn:100; do
  name="mnist-at-${spec%%:*}${spec##*:}"
  $anu train --dataset mnist --init-from models/mnist-cnn.safetensors --adversarial "${spec%%:*}" \
    --attack-steps "${spec##*:}" --max-norm 2.4 --epochs 1 --train-subset 10000 --optimizer sgd --lr 0.01 \
    --schedule constant --out "runs/$name.safetensors" --log-json "runs/$name.json" --resume
done

# Clean accuracy on the 10000 test images of the models in $AT_DIR (default: the committed ones
# in models/; AT_DIR=runs uses the models trained above).
AT_DIR="${AT_DIR:-models}"
for m in models/mnist-cnn.safetensors "$AT_DIR/mnist-at-ddn100.safetensors" "$AT_DIR/mnist-at-anu70.safetensors"; do
  $anu eval --dataset mnist --model-file "$m" --json
done

# Minimal-norm ANU-1000 on the first 200 test images for each model: robust accuracy against eps
# -> results/mnist-robustness/{robustness.json,robustness.csv,fig5.png,fig6.png}
# (committed as docs/results/paper/mnist-robustness, made from the committed models; ~4 min on machine B).
$anu robustness --dataset mnist --model-file models/mnist-cnn.safetensors \
  --model-file "$AT_DIR/mnist-at-ddn100.safetensors" --model-file "$AT_DIR/mnist-at-anu70.safetensors" \
  --attack anu --steps 1000 --n 200 --out results/mnist-robustness
