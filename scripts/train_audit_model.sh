#!/usr/bin/env bash
# Train synthct's shipped audit model for the product-like model's domain and copy it into the
# package (src/synthct/models/audit: novelty.npz + calibration.json).
#
#   scripts/train_audit_model.sh
#
# Cohort: 16 lesion-free phantoms on the paper's 3 T protocol (seed 401; disjoint from the
# synthesis training seed 101, the held-out seeds 301/302 and the demo's 2025). Each case is
# audited with the shipped product-like model's sCT (not its CT), so the thresholds are those of
# the sCTs the demo audits, and with the shipped lesion-aware model as the reference
# (synthct.audit.reference): 8 cases fit the novelty model and the signals' centre and scale,
# 8 held-out cases set the thresholds for 0.1 false flags per lesion-free volume, shared by the
# two signals of the rule (MRI consistency + reference disagreement). No lesion is ever seen.
# Work folders go to $SYNTHCT_AUDIT_DIR (default out/audit_training).
set -euo pipefail
cd "$(dirname "$0")/.."
SYNTHCT="${SYNTHCT:-.venv/bin/synthct}"
WORK="${SYNTHCT_AUDIT_DIR:-out/audit_training}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
mkdir -p "$WORK"
if [ ! -f "$WORK/cohort_free_16/manifest.csv" ]; then
  "$SYNTHCT" phantom --out "$WORK/cohort_free_16" --cases 16 --seed 401 --protocol paper_3t \
    --levels C4:L2 --no-lesions
fi
rm -rf "$WORK/model"
"$SYNTHCT" audit-train --cohort "$WORK/cohort_free_16" --out "$WORK/model" \
  --synthesis-model product_like --no-learned-consistency \
  --reference-model lesion_aware --rule consistency,reference
dest=src/synthct/models/audit
rm -rf "$dest"
mkdir -p "$dest"
cp "$WORK/model/calibration.json" "$WORK/model/novelty.npz" "$dest/"
echo "audit model -> $dest ($(du -sh "$dest" | cut -f1))"
