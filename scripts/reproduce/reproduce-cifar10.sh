#!/usr/bin/env bash
# CIFAR-10: the small CNN and the CIFAR-10 rows of Table 1 (with Figures 3-4), as reported in
# docs/RESULTS.md.
#
# Needs the CIFAR-10 binary files under $ANU_DATA/cifar10 (scripts/setup.sh builds anu and sets
# the data folder). Set SKIP_TRAIN=1 to skip training the model again, and
# CIFAR_MODEL=runs/cifar-cnn.safetensors to measure the freshly trained model instead.
source "$(dirname "$0")/../setup.sh"
model="${CIFAR_MODEL:-models/cifar-cnn.safetensors}"   # the committed model, behind docs/results/paper/cifar10

# The C&W/DDN CIFAR-10 CNN: 15 epochs, Adam 1e-3, cosine schedule, batch 128, crop+flip, seed 0
# -> runs/cifar-cnn.safetensors, per-epoch log in runs/cifar-train.json (about 250 s per epoch on
# machine A). The committed models/cifar-cnn.safetensors was made with this command (80.81%).
if [[ "${SKIP_TRAIN:-0}" != 1 ]]; then
  $anu train --dataset cifar10 --epochs 15 --out runs/cifar-cnn.safetensors --log-json runs/cifar-train.json --resume
  $anu eval --dataset cifar10 --model-file runs/cifar-cnn.safetensors --json
fi
$anu eval --dataset cifar10 --model-file "$model" --json

# Table 1, CIFAR-10 rows: DDN and ANU at budgets 50, 70, 100 on the first 1000 test images,
# Figure 3 (first image) and Figure 4 over 100 iterations -> results/cifar10
# (committed as docs/results/paper/cifar10; ~14 min on machine B).
$anu reproduce --dataset cifar10 --model-file "$model" --out results/cifar10 \
  --untargeted-only --n 1000 --budgets 50,70,100 --fig4-steps 100
