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

run="$WORK/run"
# Stages: the config's 500 iterations (cosine to 0), then resumes to each of $STAGES
# (warm restarts of the cosine schedule: after 500 iterations the vertebral body of the real MR
# was still air; each resume continues the same run, its log and its random streams).
STAGES="${STAGES:-1300 2100}"
TRAIN=("$SYNTHCT" train "$WORK/cohort/manifest.csv" --config configs/dr_contrast_agnostic.yaml
  --output "$run" --device cpu)
start=$(date +%s)
if [ "${RESUME:-0}" != 1 ] || [ ! -d "$run/checkpoints" ]; then
  rm -rf "$run"
  "${TRAIN[@]}"
fi
for total in $STAGES; do
  done_iterations=$(tail -n 1 "$run/training_log.csv" | cut -d, -f1)
  if [ "$done_iterations" -lt "$total" ]; then
    "${TRAIN[@]}" --resume --iterations "$total"
  fi
done
end=$(date +%s)

dest="src/synthct/models/dr_contrast_agnostic"
rm -rf "$dest"
mkdir -p "$dest"
cp "$run/model/"* "$dest/"
"$PY" - "$dest" "$((end - start))" <<'PYEOF'
import json, sys
from pathlib import Path
import synthct
from synthct.synthesis.model_folder import update_card
dest, seconds = sys.argv[1:]
card = json.loads((Path(dest) / "model_card.json").read_text())
update_card(dest, provenance={
    "command": "scripts/train_dr_model.sh",
    "train_command": "synthct train COHORT/manifest.csv --config configs/dr_contrast_agnostic.yaml "
    "--output RUN --device cpu, then the same with --resume --iterations 1300, then 2100",
    "training_cases": {
        "abdomen_sm": "example_ct_sm.nii.gz + example_seg_fast.nii.gz",
        "abdomen": "example_ct.nii.gz (HU classes only)",
        "thorax": "example_ct_dicom/ + example_seg_dicom.nii.gz",
    },
    "held_out": "chest_ct.nii.gz (benchmarks/dr_real_mr.py)",
    "synthct_version": synthct.__version__,
    "training_wall_time_s": int(card.get("training", {}).get("duration_s") or seconds),
})
PYEOF
"$SYNTHCT" synthesize "$DATA/example_mr_sm.nii.gz" -m "$dest" -o "$WORK/example_mr_sm_sct.nii.gz" \
  --overwrite
echo "dr_contrast_agnostic: trained in $((end - start)) s -> $dest ($(du -sh "$dest" | cut -f1))"
