#!/usr/bin/env bash
# Do the presets without a published recipe train until validation stops improving on corpora of
# other sizes? A proxy, since EmoryNLP and IEMOCAP are not available here: MELD with its train
# split cut to EmoryNLP's size (659 dialogues) and IEMOCAP's (120), dev and test whole, on frozen
# MiniLM text features. Each preset is trained as shipped (x1) and 4x longer (x4: train.epochs and
# train.patience times 4), with 3 seeds each; the preset passes when its mean test weighted-F1 is
# within 1 point of the x4 run's.
#
#   STORE=data/meld_minilm/features/text.safetensors bash experiments/presets_convergence/run.sh
#
# STORE: a MiniLM text store of all of MELD (e.g. configs/extract/meld_text_minilm.yaml mode=frozen);
# CORPUS: the MELD corpus.json it was made from.
set -euo pipefail
cd "$(dirname "$0")/../.."
CORPUS=${CORPUS:-data/meld_minilm/corpus.json}
STORE=$(realpath "${STORE:-data/meld_minilm/features/text.safetensors}")
DATA=${DATA:-data/presets_convergence}
OUT=${OUT:-runs/presets_convergence}
THREADS=${THREADS:-1}
SEEDS=${SEEDS:-2023,2024,2025}
python experiments/presets_convergence/subsets.py "$CORPUS" "$DATA" emorynlp=659 iemocap=120
for subset in emorynlp iemocap; do
  for preset in meld_text_minilm emorynlp dailydialog conversations; do
    epochs=$(python -c "import yaml; print(yaml.safe_load(open('configs/$preset.yaml'))['train']['epochs'])")
    patience=$(python -c "import yaml; print(yaml.safe_load(open('configs/$preset.yaml'))['train']['patience'])")
    for length in x1 x4; do
      scale=${length#x}
      run="$OUT/$subset/$preset/$length"
      [ -f "$run/summary.json" ] && continue
      rm -rf "$run"
      multiemo train --config "configs/$preset.yaml" --run-dir "$run" --seeds "$SEEDS" \
        dataset=meld data.root="$DATA/$subset" data.text="$STORE" data.validation=dev \
        model.num_classes=7 model.num_speakers=9 runtime.num_threads="$THREADS" \
        train.epochs=$((epochs * scale)) train.patience=$((patience * scale)) > "$run.log" 2>&1 \
        || { mkdir -p "$(dirname "$run")"; echo "failed: $run (see $run.log)"; exit 1; }
    done
  done
done
python experiments/presets_convergence/table.py "$OUT"
