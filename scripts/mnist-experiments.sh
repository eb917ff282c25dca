#!/usr/bin/env bash
# The MNIST measurements reported in the issue notes, in the order they were run on the
# 2-core CPU machine. Each step writes its results under runs/ (JSON) or results/ (tables,
# figures); rerunning `reproduce` skips rows already saved.
source "$(dirname "$0")/setup.sh"

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

# Issue 3: gamma_0 x alpha_gamma sweep of ANU-70 (first 200 images), then the best settings on 1000.
mkdir -p runs/sweep
for g in 0.05 0.1 0.2 0.4; do for a in 0.05 0.15; do
  $anu attack --dataset mnist --attack anu --steps 70 --n 200 --gamma0 $g --alpha-gamma $a --json runs/sweep/anu70-g$g-a$a.json
done; done
for k in 70 100; do $anu attack --dataset mnist --attack ddn --steps $k --n 200 --json runs/sweep/ddn$k.json; done
for spec in 70:0.2 70:0.1 100:0.2; do
  $anu attack --dataset mnist --attack anu --steps ${spec%%:*} --n 1000 --gamma0 ${spec##*:} --alpha-gamma 0.15 \
    --json runs/sweep/n1000-anu${spec%%:*}-g${spec##*:}.json
done

# Issue 4: Figures 3-4 on the first 100 images (1000 iterations), and ANU's overhead over DDN.
$anu reproduce --dataset mnist --out results/mnist-n100 --untargeted-only --n 100 --budgets 50,100,1000
$anu bench --dataset mnist --batch-sizes 100,1000 --steps 20 --reps 200 --json runs/bench-overhead.json

# Issue 4: Table 2 on all 1000 images (9000 targeted attacks) at the three smallest budgets.
$anu reproduce --dataset mnist --out results/mnist-targeted --targeted-only --n 1000 --budgets 50,85,100
