#!/usr/bin/env bash
# ImageNet: the pretrained EfficientNet-Lite0 on the 200 ImageNet sample images, the rows of
# docs/RESULTS.md section 8: clean accuracy, Table 1 rows (DDN-100, ANU-70, ANU-100) and the
# targeted rows (DDN-100, ANU-87; 20 seeded random target classes per image, 4000 attacks each).
#
# Needs $ANU_DATA/imagenet-sample and $ANU_DATA/models/efficientnet-lite0-57934424.pth
# (scripts/setup.sh builds anu and sets the data folder). Every attack saves the results of its
# finished batches beside its output (`.NAME.json.part`): after an interruption, run the script
# again and each attack continues where it stopped; finished ones are not redone. At about 29
# images x iterations per second (2-core AMD EPYC Zen 3), the Table 1 rows take about 30 min and
# the targeted rows about 7 h.
source "$(dirname "$0")/../setup.sh"
model="$ANU_DATA/models/efficientnet-lite0-57934424.pth"
common=(--dataset imagenet-sample --model efficientnet-lite0 --model-file "$model")
out=results/imagenet
mkdir -p "$out"

$anu eval "${common[@]}" --json

# attack NAME ARGS...: one campaign on all 200 images -> $out/NAME.json, unless already there.
attack() {
  local name=$1
  shift
  [[ -f "$out/$name.json" ]] || $anu attack "${common[@]}" --n 200 "$@" --json "$out/$name.json"
}

# Table 1 (untargeted), batches of 25 (the default for this data set).
attack ddn-100 --attack ddn --steps 100
attack anu-70 --attack anu --steps 70
attack anu-100 --attack anu --steps 100

# Table 2 (targeted): the paper's ImageNet budgets DDN-100 and ANU-87.
attack ddn-100-targeted --attack ddn --steps 100 --targeted --batch-size 20
attack anu-87-targeted --attack anu --steps 87 --targeted --batch-size 20
