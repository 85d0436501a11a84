#!/usr/bin/env bash
# Train the contrast-agnostic (domain-randomised) synthesis model on label maps of real CTs and
# apply it to the real MR of ../shared/data (example_mr_sm, another subject, no CT).
#
#   scripts/train_dr_model.sh            cohort + training + sCT of example_mr_sm
#
# Training cases (tissue maps from synthct.phantom.ct_derived on the real CTs):
#   abdomen_sm  example_ct_sm.nii.gz + example_seg_fast.nii.gz (TotalSegmentator labels)
#   abdomen     example_ct.nii.gz (HU classes alone; the same subject, 112 slices)
#   thorax      example_ct_dicom/ + example_seg_dicom.nii.gz
# chest_ct (another subject) is held out: benchmarks/dr_real_mr.py renders its MRI with the
# existing renderer and compares the model with the bulk-HU baseline there.
# Work folders go to $SYNTHCT_TRAIN_DIR (default out/dr_training); the model folder is copied
# to src/synthct/models/dr_contrast_agnostic/ with a provenance entry in its card.
# ~67 min on one CPU thread (4,020 s + 639 s measured beside other training runs).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
SYNTHCT="${SYNTHCT:-.venv/bin/synthct}"
WORK="${SYNTHCT_TRAIN_DIR:-out/dr_training}"
DATA="${SYNTHCT_DATA:-../shared/data/real/totalsegmentator}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
mkdir -p "$WORK"

if [ ! -f "$WORK/cohort/manifest.csv" ]; then
  "$PY" - "$DATA" "$WORK/cohort" <<'PYEOF'
import sys
from synthct.io import read_volume
from synthct.synthesis.randomised_source import write_labelled_cohort
data, out = sys.argv[1:]
def ct(name): return read_volume(f"{data}/{name}", kind="ct")
def labels(name): return read_volume(f"{data}/{name}", kind="label")
write_labelled_cohort(
    [
        ("abdomen_sm", ct("example_ct_sm.nii.gz"), labels("example_seg_fast.nii.gz"), "train"),
        ("abdomen", ct("example_ct.nii.gz"), None, "train"),
        ("thorax", ct("example_ct_dicom"), labels("example_seg_dicom.nii.gz"), "train"),
    ],
    out,
)
PYEOF
fi

# Stage 1: configs/dr_bone_dice.yaml (8,000 iterations, physics-driven contrasts, bone Dice);
# stage 2: configs/dr_fine_tune.yaml (1,500 iterations from stage 1's weights, 30 % mixture
# contrasts). Both train in LPS (plan.orientation): the abdomen CTs are stored RAS, the thorax
# LPS, and the network must see one layout (docs/domain_randomisation.md, "Fifth attempt").
run="$WORK/run"
run2="$WORK/run_fine_tune"
start=$(date +%s)
for stage in 1 2; do
  if [ "$stage" = 1 ]; then out="$run"; config=configs/dr_bone_dice.yaml
  else
    # the fine-tune config names out/dr_training/run/model: point it at this run's stage 1
    out="$run2"; config="$WORK/dr_fine_tune.yaml"
    sed "s|init_weights: out/dr_training/run/model|init_weights: $run/model|" \
      configs/dr_fine_tune.yaml > "$config"
  fi
  resume=()
  if [ "${RESUME:-0}" = 1 ] && [ -d "$out/checkpoints" ]; then
    resume=(--resume)
  else
    rm -rf "$out"
  fi
  "$SYNTHCT" train "$WORK/cohort/manifest.csv" --config "$config" --output "$out" --device cpu \
    "${resume[@]}"
done
end=$(date +%s)

dest="src/synthct/models/dr_contrast_agnostic"
rm -rf "$dest"
mkdir -p "$dest"
cp "$run2/model/"* "$dest/"
"$PY" - "$dest" "$((end - start))" <<'PYEOF'
import json, sys
from pathlib import Path
import synthct
from synthct.synthesis.model_folder import update_card
dest, seconds = sys.argv[1:]
card = json.loads((Path(dest) / "model_card.json").read_text())
update_card(dest, provenance={
    "command": "scripts/train_dr_model.sh",
    "train_command": "synthct train COHORT/manifest.csv --config configs/dr_bone_dice.yaml "
    "--output RUN --device cpu (stage 1), then synthct train COHORT/manifest.csv --config "
    "configs/dr_fine_tune.yaml --output RUN2 --device cpu (stage 2, from stage 1's weights)",
    "training_cases": {
        "abdomen_sm": "example_ct_sm.nii.gz + example_seg_fast.nii.gz (stored RAS)",
        "abdomen": "example_ct.nii.gz (HU classes only; stored RAS)",
        "thorax": "example_ct_dicom/ + example_seg_dicom.nii.gz (LPS)",
    },
    "orientation": "every case trained in LPS (plan.orientation)",
    "held_out": "chest_ct.nii.gz (benchmarks/dr_real_mr.py)",
    "synthct_version": synthct.__version__,
    "training_wall_time_s": int(seconds),
})
PYEOF
"$SYNTHCT" synthesize "$DATA/example_mr_sm.nii.gz" -m "$dest" -o "$WORK/example_mr_sm_sct.nii.gz" \
  --overwrite
echo "dr_contrast_agnostic: trained in $((end - start)) s -> $dest ($(du -sh "$dest" | cut -f1))"
