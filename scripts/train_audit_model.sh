#!/usr/bin/env bash
# Train synthct's shipped audit model for the product-like model's domain and copy it into the
# package (src/synthct/models/audit: novelty.npz + calibration.json).
#
#   scripts/train_audit_model.sh
#
# Cohorts (all lesion-free; no lesion is ever seen):
# * AUDIT_CASES (default 32; 16 before session 19) procedural phantoms on the paper's 3 T
#   protocol, classic MRI (seed 401; disjoint from the synthesis training seed 101, the held-out
#   seeds 301/302 and the demo's 2025);
# * with WORLD_CASES > 0 (default 0, which is what ships; calibrated on both worlds, WORLD_CASES=8,
#   the audit flagged 0/5 real-anatomy targets of held-out patient C at 0.00 false flags per
#   volume with the session-12 models, docs/audit_world.md) and scripts/build_training_world.py
#   present:
#   that many real-anatomy subjects of the shipped models' new world (patients A and B of
#   ../shared/data/real/totalsegmentator, 1 mm crops around the spine, deformed, realistic
#   3 T MRI; seed 401, not the synthesis training seed 101; patient C, the held-out patient,
#   is never used).
# Each case is audited with the shipped product-like model's sCT (not its CT), so the thresholds
# are those of the sCTs the demo audits, and with the shipped lesion-aware model as the
# reference (synthct.audit.reference). The first half of the cases (procedural only) fits the
# novelty model; the second half (the last procedural phantoms and every real-anatomy subject)
# sets the thresholds for 0.1 false flags per lesion-free volume, shared by the two signals of
# the rule (MRI consistency + reference disagreement). The calibration records its domain (field
# strength, protocol, voxel sizes, MRI realism of all cases; synthct.audit.domain): the audit
# refuses MRI outside it. Work folders go to $SYNTHCT_AUDIT_DIR (default out/audit_training).
set -euo pipefail
cd "$(dirname "$0")/.."
SYNTHCT="${SYNTHCT:-.venv/bin/synthct}"
PY="${PYTHON:-.venv/bin/python}"
WORK="${SYNTHCT_AUDIT_DIR:-out/audit_training}"
WORLD_CASES="${WORLD_CASES:-0}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
mkdir -p "$WORK"
AUDIT_CASES="${AUDIT_CASES:-32}"
free="$WORK/cohort_free_$AUDIT_CASES"
if [ ! -f "$free/manifest.csv" ]; then
  "$SYNTHCT" phantom --out "$free" --cases "$AUDIT_CASES" --seed 401 --protocol paper_3t \
    --levels C4:L2 --no-lesions
fi
cohorts=(--cohort "$free")
if [ "$WORLD_CASES" -gt 0 ] && [ -f scripts/build_training_world.py ]; then
  world="$WORK/world_free_$WORLD_CASES"
  if [ ! -f "$world/manifest.csv" ]; then
    "$PY" scripts/build_training_world.py --out "$world" --ct-subjects "$WORLD_CASES" \
      --procedural 0 --seed 401 --grid-mm 1.0 --crop 96 96 72
  fi
  cohorts+=(--cohort "$world")
fi
rm -rf "$WORK/model"
"$SYNTHCT" audit-train "${cohorts[@]}" --out "$WORK/model" \
  --synthesis-model product_like --no-learned-consistency \
  --reference-model lesion_aware --rule consistency,reference
dest=src/synthct/models/audit
rm -rf "$dest"
mkdir -p "$dest"
# checksums.json: load_audit_model verifies the shipped files against it
cp "$WORK/model/calibration.json" "$WORK/model/novelty.npz" "$WORK/model/checksums.json" "$dest/"
echo "audit model -> $dest ($(du -sh "$dest" | cut -f1))"
