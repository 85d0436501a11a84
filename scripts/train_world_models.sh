#!/usr/bin/env bash
# Train the two synthesis models (product_like, lesion_aware) on the new world (issue #15).
#
#   scripts/train_world_models.sh [product_like|lesion_aware|all]   (default: all)
#
# Two stages per model:
#   1. the procedural-world model (scripts/train_shipped_models.sh: 6 phantoms, 24^3 patches),
#      into $SYNTHCT_BASE_MODELS (default out/procedural_models/NAME; kept when present);
#   2. fine-tuning from it on the new world: configs/product_like_world.yaml,
#      configs/lesion_aware_world.yaml (training.init_weights; planned spacing = the paper's
#      0.74 x 0.74 x 0.9 mm grid, 48^3 patches). The model folders go to $SYNTHCT_WORLD_MODELS (default
# out/world_models/NAME); INSTALL=1 copies them into the package as the shipped models instead.
#
#   product_like  trained WITHOUT intradural lesions (the paper's commercial sCT was): sham
#                 insertion; the procedural cases hold extradural degenerative lesions only
#                 (disc_herniation, opll, olf)
#   lesion_aware  the same cohort and settings plus lesion insertion (intradural meningiomas
#                 40-1000 HU and schwannomas, consistent in MRI and CT) during training
#
# The cohort (issue #15, scripts/build_training_world.py, seed 101): 72 real-anatomy subjects
# (1 mm crops around the spine of patients A and B of ../shared/data/real/totalsegmentator,
# deformed, realistic two-echo 3 T MRI), 36 procedural phantoms (paper_3t grid, thorax and
# trabecular texture, half classic and half realistic MRI) and 36 plain procedural phantoms
# (no thorax, uniform marrow, classic MRI: the demo's world, on which the BRIEF's procedural
# targets are measured). Held out: patient C
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
BASE="${SYNTHCT_BASE_MODELS:-out/procedural_models}"
WHICH="${1:-all}"
# One thread per process: on a shared 2-core machine two torch threads fighting other jobs
# for the cores made training ~15x slower than one thread.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
COHORT_SEED=101
COHORT_CASES=144
mkdir -p "$WORK"

# (a) the training cohort (seconds per case on one core: ~1 real-anatomy, ~4 procedural)
COHORT_CMD=("$PY" scripts/build_training_world.py --out "$WORK/cohort_train"
  --ct-subjects 72 --procedural 36 --plain-procedural 36 --seed "$COHORT_SEED" --grid-mm 1.0 --crop 96 96 72)
if [ -f "$WORK/cohort_train/manifest.csv" ]; then
  echo "cohort exists: $WORK/cohort_train"
else
  "${COHORT_CMD[@]}"
fi

# (b) train, (c) copy the model folder (into the package with INSTALL=1) with provenance
SCRIPT=scripts/train_world_models.sh
VALIDATION_CMD="benchmarks/synthesis_accuracy.py --methods baseline,product_like,lesion_aware --lesion-cases 24 --real-anatomy --record-in-cards"
HELD_OUT_PATIENTS='["C (example_ct_dicom): never in training"]'
source scripts/train_model_step.sh
train_one() {
  local dest="$MODELS/$1"
  if [ "${INSTALL:-0}" = 1 ]; then dest="src/synthct/models/$1"; fi
  # stage 1 (the configs' training.init_weights read out/procedural_models/NAME)
  if [ ! -f "$BASE/$1/model_card.json" ]; then
    SYNTHCT_MODELS_DEST="$BASE" SYNTHCT_TRAIN_DIR="$WORK/procedural" \
      scripts/train_shipped_models.sh "$1"
  fi
  STAGE_1="{\"command\": \"scripts/train_shipped_models.sh $1 (SYNTHCT_MODELS_DEST=$BASE)\",
    \"note\": \"the procedural-world model the fine-tuning started from (training.initial_weights)\"}" \
    train_model "$1" "configs/$1_world.yaml" "$dest"
}

case "$WHICH" in
  product_like|lesion_aware) train_one "$WHICH" ;;
  all) train_one product_like; train_one lesion_aware ;;
  *) echo "usage: $0 [product_like|lesion_aware|all]" >&2; exit 2 ;;
esac
