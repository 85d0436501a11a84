#!/usr/bin/env bash
# Train synthct's two shipped synthesis models on phantom cohorts and copy them into the package.
#
#   scripts/train_shipped_models.sh [product_like|lesion_aware|all]   (default: all)
#
#   product_like  trained WITHOUT intradural lesions (the paper's commercial sCT was), on a
#                 cohort with extradural degenerative lesions only (disc_herniation, opll, olf)
#   lesion_aware  the same cohort and settings plus lesion insertion (intradural meningiomas
#                 40-1000 HU and schwannomas, consistent in MRI and CT) during training
#
# Cohort seeds: 101 (training). Held-out: benchmarks/synthesis_accuracy.py uses 301/302, the demo's
# paper cohort uses 2025. Work folders go to $SYNTHCT_TRAIN_DIR (default out/shipped_training).
# Each model card gets a "provenance" entry: this command, the seeds and the synthct version.
# RESUME=1 continues an interrupted run in $SYNTHCT_TRAIN_DIR instead of starting it again.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
SYNTHCT="${SYNTHCT:-.venv/bin/synthct}"
WORK="${SYNTHCT_TRAIN_DIR:-out/shipped_training}"
WHICH="${1:-all}"
# One thread per process: on a shared 2-core machine two torch threads fighting other jobs
# for the cores made training ~15x slower than one thread.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
COHORT_SEED=101
COHORT_CASES=6
mkdir -p "$WORK"

# (a) the training cohort: paper_3t grid (0.74 x 0.74 x 0.9 mm, 338 x 338 x 100, TR 7 ms,
#     TE 1.15/2.30 ms), extradural degenerative lesions in about half of the cases.
COHORT_CMD=("$SYNTHCT" phantom --out "$WORK/cohort_train" --cases "$COHORT_CASES"
  --seed "$COHORT_SEED" --protocol paper_3t --levels C4:L2
  --lesion-types disc_herniation,opll,olf --lesion-fraction 0.5)
if [ -f "$WORK/cohort_train/manifest.csv" ]; then
  echo "cohort exists: $WORK/cohort_train"
else
  "${COHORT_CMD[@]}"
fi

train_one() {
  local name="$1" config="configs/$1.yaml"
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
  # (c) copy the model folder into the package and record provenance in its card
  local dest="src/synthct/models/$name"
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
    "command": f"scripts/train_shipped_models.sh {name}",
    "cohort_command": cohort_cmd,
    "train_command": f"synthct train COHORT/manifest.csv --config {config} --output RUN --device cpu",
    "config": config,
    "cohort_seed": int(seed),
    "cohort_cases": int(cases),
    "training_seed": card.get("training", {}).get("seed"),
    "held_out_seeds": {"benchmarks/synthesis_accuracy.py": [301, 302], "demo paper cohort": 2025},
    "held_out_validation_command": (
        "benchmarks/synthesis_accuracy.py --methods baseline,product_like,lesion_aware "
        "--lesion-cases 24 --record-in-cards"
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
