#!/usr/bin/env bash
# MNIST: the base model, Table 1 (untargeted), Table 2 (targeted), Figures 3-4 and the
# gamma_0 x alpha_gamma sweep of ANU, as reported in docs/RESULTS.md.
#
# Needs the MNIST files under $ANU_DATA/mnist (scripts/setup.sh builds anu and sets the data
# folder). Tables and figures go to results/<name>; where docs/results/<name> exists, it holds
# the committed output of the same command. Single attack runs write JSON under runs/.
# `anu reproduce` saves each row as it finishes and skips saved rows when rerun.
# Times below are from the 2-core machines A and B of docs/RESULTS.md (B is the faster one).
# Set SKIP_TRAIN=1 to skip training the base model again.
source "$(dirname "$0")/../setup.sh"
model=models/mnist-cnn.safetensors   # the committed base model, used by every step below

# Base model: 12 epochs, Adam 1e-3, cosine schedule, batch 128, seed 0 -> runs/mnist-cnn.safetensors
# (the committed models/mnist-cnn.safetensors was made with this command; 99.46% test accuracy).
if [[ "${SKIP_TRAIN:-0}" != 1 ]]; then
  $anu train --dataset mnist --epochs 12 --out runs/mnist-cnn.safetensors --log-json runs/mnist-train.json --resume
  $anu eval --dataset mnist --model-file runs/mnist-cnn.safetensors --json
fi
$anu eval --dataset mnist --model-file "$model" --json

# The three headline configurations on the first 1000 test images, untargeted (40-60 s each on machine A):
# runs/attack-ddn-100.json, runs/attack-anu-70.json, runs/attack-anu-100.json.
for spec in ddn:100 anu:70 anu:100; do
  $anu attack --dataset mnist --model-file "$model" --attack "${spec%%:*}" --steps "${spec##*:}" \
    --n 1000 --json "runs/attack-${spec%%:*}-${spec##*:}.json"
done

# Figures 3-4 and Table 1 on the first 100 test images (budgets 50, 100, 1000; Figure 4 over
# 1000 iterations) -> results/mnist-n100 (committed as docs/results/paper/mnist-n100; ~4 min on machine B).
$anu reproduce --dataset mnist --model-file "$model" --out results/mnist-n100 --untargeted-only \
  --n 100 --budgets 50,100,1000 --fig4-steps 1000

# Table 2 on the first 1000 test images (9000 targeted attacks) at budgets 50, 85, 100
# -> results/mnist-targeted (committed as docs/results/paper/mnist-targeted; ~31 min on machine B).
$anu reproduce --dataset mnist --model-file "$model" --out results/mnist-targeted --targeted-only \
  --n 1000 --budgets 50,85,100

# gamma_0 x alpha_gamma sweep of ANU-70 on the first 200 images, DDN-70/100 beside it, then the
# best settings on 1000 images -> results/gamma-sweep/*.json and log.txt (committed as
# docs/results/paper/gamma-sweep).
mkdir -p results/gamma-sweep
: > results/gamma-sweep/log.txt
for g in 0.05 0.1 0.2 0.4; do for a in 0.05 0.15; do
  $anu attack --dataset mnist --model-file "$model" --attack anu --steps 70 --n 200 --gamma0 $g --alpha-gamma $a \
    --json results/gamma-sweep/anu70-g$g-a$a.json | tee -a results/gamma-sweep/log.txt
done; done
for k in 70 100; do
  $anu attack --dataset mnist --model-file "$model" --attack ddn --steps $k --n 200 \
    --json results/gamma-sweep/ddn$k.json | tee -a results/gamma-sweep/log.txt
done
for spec in 70:0.2 70:0.1 100:0.2; do
  $anu attack --dataset mnist --model-file "$model" --attack anu --steps "${spec%%:*}" --n 1000 \
    --gamma0 "${spec##*:}" --alpha-gamma 0.15 \
    --json "results/gamma-sweep/n1000-anu${spec%%:*}-g${spec##*:}.json" | tee -a results/gamma-sweep/log.txt
done
# The optional floor on gamma_k, ANU-70 on the first 200 images -> runs/gamma-min-*.json.
for floor in 0.02 0.05; do
  $anu attack --dataset mnist --model-file "$model" --attack anu --steps 70 --n 200 --gamma-min $floor \
    --json "runs/gamma-min-$floor.json"
done

# Table 2 on the first 100 images (900 targeted attacks) including budget 300
# -> results/mnist-targeted-n100 (not committed; ~10 min on machine A).
$anu reproduce --dataset mnist --model-file "$model" --out results/mnist-targeted-n100 --targeted-only \
  --n 100 --budgets 50,85,100,300

# Table 1 in full: N = 1000, budgets 50, 70, 100, 200, 500, 1000, Figure 4 over 1000 iterations
# -> results/mnist (not committed; ~37 min on machine A).
$anu reproduce --dataset mnist --model-file "$model" --out results/mnist --untargeted-only --full
