#!/usr/bin/env bash
# Speed on an NVIDIA GPU, in one run of under 8 minutes: `anu bench` (model passes and whole
# DDN / ANU iterations) for the MNIST and CIFAR-10 CNNs and EfficientNet-Lite0 on the `cuda` and
# `wgpu` backends, PyTorch's forward + input gradient on the same GPU, DDN-100 end to end on
# 1000 CIFAR-10 images in f32 and in TF32 with the f32 re-check counts. Every step writes JSON
# under $OUT (default results/gpu), and summary.json gathers the rows.
#
# The binary may be built on another machine (no GPU or CUDA toolkit needed there):
#   cargo build --release --features wgpu,cuda
# and copied with the repository (models/ and scripts/). The GPU machine needs the NVIDIA driver
# and NVRTC (libnvrtc.so; see README, "GPU"), the data folder ($ANU_DATA: mnist/, cifar10/,
# imagenet-sample/, models/) and, for the PyTorch rows, PyTorch with CUDA
# (`pip install torch==2.9.0 safetensors numpy`; EfficientNet also `efficientnet-lite-pytorch==0.1.0
# torchvision pillow`). A step that fails or runs out of time is recorded as such and the
# others go on. The time limits add up to 450 s.
#
#   ANU=target/release/anu ANU_DATA=../shared/data OUT=results/gpu bash scripts/speed/gpu-measure.sh
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export ANU_DATA="${ANU_DATA:-../shared/data}"
anu="${ANU:-./target/release/anu}"
out="${OUT:-results/gpu}"
mkdir -p "$out"
effnet="$ANU_DATA/models/efficientnet-lite0-57934424.pth"
log="$out/log.txt"
: > "$log"
steps_file="$out/steps.tsv"
: > "$steps_file"

# step NAME SECONDS COMMAND...: runs COMMAND with a time limit, its output to the log; records
# name, exit status and wall milliseconds.
step() {
  local name=$1 limit=$2
  shift 2
  echo "+ $*" >> "$log"
  local t0 rc
  t0=$(date +%s%N)
  timeout "$limit" "$@" >> "$log" 2>&1
  rc=$?
  printf '%s\t%s\t%s\n' "$name" "$rc" "$(( ($(date +%s%N) - t0) / 1000000 ))" >> "$steps_file"
  echo "$name: exit $rc" >&2
}

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true; } > "$out/gpu.txt" 2>&1
"$anu" --version > "$out/anu-version.txt" 2>&1 || true

for dev in cuda wgpu; do
  step "bench-mnist-$dev" 35 "$anu" bench --device "$dev" --dataset mnist --model-file models/mnist-cnn.safetensors \
    --batch-sizes 100,1000 --steps 5 --reps 2 --json "$out/bench-mnist-$dev.json"
  step "bench-cifar10-$dev" 35 "$anu" bench --device "$dev" --dataset cifar10 --model-file models/cifar-cnn.safetensors \
    --batch-sizes 100,1000 --steps 5 --reps 2 --json "$out/bench-cifar10-$dev.json"
  step "bench-efficientnet-$dev" 50 "$anu" bench --device "$dev" --dataset imagenet-sample --model efficientnet-lite0 \
    --model-file "$effnet" --batch-sizes 25,100 --steps 2 --reps 1 --json "$out/bench-efficientnet-$dev.json"
done

if python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
  step torch-mnist 25 python3 scripts/baselines/torch_baseline.py --device cuda --no-attack --dataset mnist \
    --model models/mnist-cnn.safetensors --batch-sizes 100,1000 --reps 5 --json "$out/torch-mnist-cuda.json"
  step torch-cifar10 25 python3 scripts/baselines/torch_baseline.py --device cuda --no-attack --dataset cifar10 \
    --model models/cifar-cnn.safetensors --batch-sizes 100,1000 --reps 5 --json "$out/torch-cifar10-cuda.json"
  step torch-efficientnet 40 python3 scripts/baselines/torch_baseline.py --device cuda --no-attack --dataset imagenet-sample \
    --model "$effnet" --batch-sizes 25,100 --n 100 --reps 3 --json "$out/torch-efficientnet-cuda.json"
else
  echo "PyTorch with CUDA not importable: no PyTorch rows" | tee -a "$log" >&2
fi

for precision in f32 tf32; do
  step "ddn100-cifar10-cuda-$precision" 40 "$anu" attack --device cuda --dataset cifar10 \
    --model-file models/cifar-cnn.safetensors --attack ddn --steps 100 --n 1000 --precision "$precision" \
    --json "$out/ddn100-cifar10-cuda-$precision.json"
done
step ddn100-cifar10-wgpu-f32 40 "$anu" attack --device wgpu --dataset cifar10 \
  --model-file models/cifar-cnn.safetensors --attack ddn --steps 100 --n 1000 \
  --json "$out/ddn100-cifar10-wgpu-f32.json"

python3 - "$out" <<'PY'
import json, os, sys
out = sys.argv[1]
def load(name):
    try:
        with open(os.path.join(out, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
steps = [dict(zip(("step", "exit", "milliseconds"), line.rstrip("\n").split("\t")))
         for line in open(os.path.join(out, "steps.tsv"))]
summary = {"gpu": open(os.path.join(out, "gpu.txt")).read().strip(), "steps": steps,
           "anu_bench": {}, "pytorch": {}, "ddn100_cifar10": {}}
for model in ("mnist", "cifar10", "efficientnet"):
    for dev in ("cuda", "wgpu"):
        summary["anu_bench"][f"{model}-{dev}"] = load(f"bench-{model}-{dev}.json")
    summary["pytorch"][model] = load(f"torch-{model}-cuda.json")
for run in ("cuda-f32", "cuda-tf32", "wgpu-f32"):
    r = load(f"ddn100-cifar10-{run}.json")
    if r:
        r = {k: r.get(k) for k in ("success_rate", "mean_l2", "median_l2", "seconds",
                                   "images_x_iterations_per_second", "precision", "f32_recheck", "device")}
    summary["ddn100_cifar10"][run] = r
with open(os.path.join(out, "summary.json"), "w") as f:
    json.dump(summary, f, indent=1)
print(f"wrote {out}/summary.json")
PY
