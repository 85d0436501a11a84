#!/usr/bin/env bash
# Train the two synthesis models (product_like, lesion_aware) on the new world (issue #15).
#
#   scripts/train_world_models.sh [product_like|lesion_aware|all]   (default: all)
#
# Configs: configs/product_like_world.yaml, configs/lesion_aware_world.yaml (1 mm planned
# spacing, 48^3 patches). The model folders go to $SYNTHCT_WORLD_MODELS (default
# out/world_models/NAME); INSTALL=1 copies them into the package as the shipped models instead
# (scripts/train_shipped_models.sh keeps training the shipped models on 6 procedural phantoms).
#
#   product_like  trained WITHOUT intradural lesions (the paper's commercial sCT was): sham
#                 insertion; the procedural cases hold extradural degenerative lesions only
#                 (disc_herniation, opll, olf)
#   lesion_aware  the same cohort and settings plus lesion insertion (intradural meningiomas
#                 40-1000 HU and schwannomas, consistent in MRI and CT) during training
#
# The cohort (issue #15, scripts/build_training_world.py, seed 101): 72 real-anatomy subjects
# (1 mm crops around the spine of patients A and B of ../shared/data/real/totalsegmentator,
# deformed, realistic two-echo 3 T MRI) and 36 procedural phantoms (paper_3t grid, thorax and
# trabecular texture, half classic and half realistic MRI). Held out: patient C
# (example_ct_dicom) entirely; benchmarks/synthesis_accuracy.py uses seeds 301/302, the demo's
# paper cohort 2025. Work folders go to $SYNTHCT_TRAIN_DIR (default out/world_training).
# Each model card gets a "provenance" entry: this command, the seeds and the synthct version.
# RESUME=1 continues an interrupted run in $SYNTHCT_TRAIN_DIR instead of starting it again
# (the cohort builder always resumes: finished cases are kept).
# The two models can train at once, one thread each: run the script once per model.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
SYNTHCT="${SYNTHCT:-.venv/bin/synthct}"
WORK="${SYNTHCT_TRAIN_DIR:-out/world_training}"
MODELS="${SYNTHCT_WORLD_MODELS:-out/world_models}"
WHICH="${1:-all}"
# One thread per process: on a shared 2-core machine two torch threads fighting other jobs
# for the cores made training ~15x slower than one thread.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
COHORT_SEED=101
COHORT_CASES=108
mkdir -p "$WORK"

# (a) the training cohort (seconds per case on one core: ~1 real-anatomy, ~4 procedural)
COHORT_CMD=("$PY" scripts/build_training_world.py --out "$WORK/cohort_train"
  --ct-subjects 72 --procedural 36 --seed "$COHORT_SEED" --grid-mm 1.0 --crop 96 96 72)
if [ -f "$WORK/cohort_train/manifest.csv" ]; then
  echo "cohort exists: $WORK/cohort_train"
else
  "${COHORT_CMD[@]}"
fi

train_one() {
  local name="$1" config="configs/$1_world.yaml"
  local run="$WORK/run_$name"
  local start end
  local resume=()
  start=$(date +%s)
  if [ "${RESUME:-0}" = 1 ] && [ -d "$run/checkpoints" ]; then
    resume=(--resume)   # continue (or finish) an interrupted run of the same config
  else
    rm -rf "$run"
  fi
  "$SYNTHCT" train "$WORK/cohort_train/manifest.csv" --config "$config" --output "$run" \
    --device cpu "${resume[@]}"
  end=$(date +%s)
  # (c) copy the model folder (into the package with INSTALL=1) and record provenance in its card
  local dest="$MODELS/$name"
  if [ "${INSTALL:-0}" = 1 ]; then dest="src/synthct/models/$name"; fi
  rm -rf "$dest"
  mkdir -p "$dest"
  cp "$run/model/"* "$dest/"
  "$PY" - "$dest" "$name" "$config" "$COHORT_SEED" "$COHORT_CASES" "$((end - start))" \
    "${COHORT_CMD[*]}" <<'PYEOF'
import json, sys
from pathlib import Path
import synthct
from synthct.synthesis.model_folder import update_card
dest, name, config, seed, cases, seconds, cohort_cmd = sys.argv[1:]
card = json.loads((Path(dest) / "model_card.json").read_text())
provenance = {
    "command": f"scripts/train_world_models.sh {name}",
    "cohort_command": cohort_cmd,
    "train_command": f"synthct train COHORT/manifest.csv --config {config} --output RUN --device cpu",
    "config": config,
    "cohort_seed": int(seed),
    "cohort_cases": int(cases),
    "training_seed": card.get("training", {}).get("seed"),
    "held_out_seeds": {"benchmarks/synthesis_accuracy.py": [301, 302], "demo paper cohort": 2025},
    "held_out_patients": ["C (example_ct_dicom): never in training"],
    "held_out_validation_command": (
        "benchmarks/synthesis_accuracy.py --methods baseline,product_like,lesion_aware "
        "--lesion-cases 24 --real-anatomy --record-in-cards"
    ),
    "synthct_version": synthct.__version__,
    "training_wall_time_s": int(seconds),
}
if card.get("training", {}).get("duration_s"):  # the run's own clock (also across a resume)
    provenance["training_wall_time_s"] = int(card["training"]["duration_s"])
update_card(dest, provenance=provenance)
PYEOF
  echo "$name: trained in $((end - start)) s -> $dest ($(du -sh "$dest" | cut -f1))"
}

case "$WHICH" in
  product_like|lesion_aware) train_one "$WHICH" ;;
  all) train_one product_like; train_one lesion_aware ;;
  *) echo "usage: $0 [product_like|lesion_aware|all]" >&2; exit 2 ;;
esac
