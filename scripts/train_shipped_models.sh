#!/usr/bin/env bash
# Train the procedural-world synthesis models: stage 1 of the shipped models, which
# scripts/train_world_models.sh fine-tunes on the new world (INSTALL=1 there puts those into the
# package). These go to $SYNTHCT_MODELS_DEST (default out/procedural_models/NAME); the package's
# models are not touched.
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

# (b) train, (c) copy the model folder into the package with provenance in its card
SCRIPT=scripts/train_shipped_models.sh
VALIDATION_CMD="benchmarks/synthesis_accuracy.py --methods baseline,product_like,lesion_aware --lesion-cases 24 --record-in-cards"
HELD_OUT_PATIENTS='[]'
source scripts/train_model_step.sh
# SYNTHCT_MODELS_DEST: where the model folders go (the world configs' init_weights read
# out/procedural_models/NAME).
train_one() { train_model "$1" "configs/$1.yaml" "${SYNTHCT_MODELS_DEST:-out/procedural_models}/$1"; }

case "$WHICH" in
  product_like|lesion_aware) train_one "$WHICH" ;;
  all) train_one product_like; train_one lesion_aware ;;
  *) echo "usage: $0 [product_like|lesion_aware|all]" >&2; exit 2 ;;
esac
