#!/usr/bin/env bash
# Speed on the CPU: `anu bench` throughput tables, ANU's per-iteration overhead over DDN, DDN-100
# wall time, the other CPU backends (LibTorch, ndarray) and the PyTorch/Foolbox baseline, as
# reported in docs/RESULTS.md under "Speed". Everything goes to results/bench/, with the file
# names of the committed docs/results/speed/bench/. Run it on an otherwise idle machine.
# Needs the MNIST files under $ANU_DATA/mnist (scripts/setup.sh builds anu and sets the data folder).
source "$(dirname "$0")/../setup.sh"
out=results/bench
model=models/mnist-cnn.safetensors
mkdir -p "$out"

# Throughput of the model passes and of whole DDN / ANU iterations at batch 100 and 1000
# -> bench-flex.json, bench-flex.txt (the printed table, with ANU/DDN time per iteration).
$anu bench --dataset mnist --model-file "$model" --batch-sizes 100,1000 --steps 10 --reps 40 \
  --json "$out/bench-flex.json" | tee "$out/bench-flex.txt"

# ANU's overhead over DDN: 10 alternating runs of 20 iterations per rule, fastest of each kept
# -> bench-overhead.json, bench-overhead.txt.
$anu bench --dataset mnist --model-file "$model" --batch-sizes 100,1000 --steps 20 --reps 200 \
  --json "$out/bench-overhead.json" | tee "$out/bench-overhead.txt"

# DDN-100 on the first 1000 test images -> attack-ddn-100.json.
$anu attack --dataset mnist --model-file "$model" --attack ddn --steps 100 --n 1000 --json "$out/attack-ddn-100.json"

# The rest needs PyTorch 2.9 and Foolbox 3 (pip install torch==2.9.0 foolbox safetensors numpy).
if ! python3 -c 'import torch, foolbox' 2>/dev/null; then
  echo "torch/foolbox not importable: skipping the LibTorch, ndarray and PyTorch measurements" >&2
  exit 0
fi

# burn's LibTorch (tch) and ndarray backends, built into a separate binary with the LibTorch
# that pip installed -> bench-libtorch.{json,txt}, attack-ddn-100-libtorch.json,
# bench-ndarray.{json,txt} (ndarray only at batch 100 and 2 iterations: its convolution
# backward runs at about 40 images/s).
LIBTORCH_USE_PYTORCH=1 cargo build --release --features ndarray,tch --target-dir target/backends
backends=target/backends/release/anu
torch_lib="$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
$backends bench --device libtorch --dataset mnist --model-file "$model" --batch-sizes 100,1000 \
  --json "$out/bench-libtorch.json" | tee "$out/bench-libtorch.txt"
$backends attack --device libtorch --dataset mnist --model-file "$model" --attack ddn --steps 100 --n 1000 \
  --json "$out/attack-ddn-100-libtorch.json"
$backends bench --device ndarray --dataset mnist --model-file "$model" --batch-sizes 100 --steps 2 --reps 2 \
  --json "$out/bench-ndarray.json" | tee "$out/bench-ndarray.txt"

# PyTorch eager forward + input gradient, and Foolbox's DDN-100 on the first 1000 test images,
# all at once and in batches of 64 -> torch-baseline.json, torch-baseline-b64.json.
python3 scripts/baselines/torch_baseline.py --data-dir "$ANU_DATA" --model "$model" --n 1000 --steps 100 \
  --json "$out/torch-baseline.json"
python3 scripts/baselines/torch_baseline.py --data-dir "$ANU_DATA" --model "$model" --n 1000 --steps 100 --attack-batch 64 \
  --json "$out/torch-baseline-b64.json"
