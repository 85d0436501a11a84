# Shared step of scripts/train_shipped_models.sh and scripts/train_world_models.sh (sourced):
# train one model of a prepared cohort and copy its folder with provenance in the card.
#
#   train_model NAME CONFIG DEST
#
# Reads: PY, SYNTHCT, WORK (holds cohort_train/manifest.csv and the run folders), COHORT_CMD
# (array), COHORT_SEED, COHORT_CASES, SCRIPT (the calling script, for the card),
# VALIDATION_CMD (the held-out validation command), HELD_OUT_PATIENTS (JSON list, may be []),
# STAGE_1 (optional JSON object: the run the model was fine-tuned from, for the card).
# RESUME=1 continues an interrupted run of the same config instead of starting it again.

train_model() {
  local name="$1" config="$2" dest="$3"
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
  # copy the model folder and record provenance in its card
  rm -rf "$dest"
  mkdir -p "$dest"
  cp "$run/model/"* "$dest/"
  "$PY" - "$dest" "$name" "$config" "$COHORT_SEED" "$COHORT_CASES" "$((end - start))" \
    "${COHORT_CMD[*]}" "$SCRIPT" "$VALIDATION_CMD" "${HELD_OUT_PATIENTS:-[]}" \
    "${STAGE_1:-null}" <<'PYEOF'
import json, sys
from pathlib import Path
import synthct
from synthct.synthesis.model_folder import update_card
(dest, name, config, seed, cases, seconds, cohort_cmd, script, validation, patients,
 stage_1) = sys.argv[1:]
card = json.loads((Path(dest) / "model_card.json").read_text())
provenance = {
    "command": f"{script} {name}",
    "cohort_command": cohort_cmd,
    "train_command": f"synthct train COHORT/manifest.csv --config {config} --output RUN --device cpu",
    "config": config,
    "cohort_seed": int(seed),
    "cohort_cases": int(cases),
    "training_seed": card.get("training", {}).get("seed"),
    "held_out_seeds": {"benchmarks/synthesis_accuracy.py": [301, 302], "demo paper cohort": 2025},
    "held_out_validation_command": validation,
    "synthct_version": synthct.__version__,
    "training_wall_time_s": int(seconds),
}
if json.loads(patients):
    provenance["held_out_patients"] = json.loads(patients)
if json.loads(stage_1):  # "null" when the run started from random weights
    provenance["stage_1"] = json.loads(stage_1)
if card.get("training", {}).get("duration_s"):  # the run's own clock (also across a resume)
    provenance["training_wall_time_s"] = int(card["training"]["duration_s"])
update_card(dest, provenance=provenance)
PYEOF
  echo "$name: trained in $((end - start)) s -> $dest ($(du -sh "$dest" | cut -f1))"
}
