#!/usr/bin/env bash
# Do the presets without a published recipe train until validation stops improving on corpora of
# other sizes? A proxy, since EmoryNLP and IEMOCAP are not available here: MELD with its train
# split cut to EmoryNLP's size (659 dialogues) and IEMOCAP's (120), dev and test whole, on frozen
# MiniLM text features. Each preset is trained as shipped (x1) and 4x longer (x4: train.epochs and
# train.patience times 4, continuing the x1 run with --resume), with 3 seeds each; the preset passes when its mean test weighted-F1 is
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
  # configs/dailydialog.yaml and configs/conversations.yaml have emorynlp.yaml's model, loss and
  # training rule (they differ in dataset, data root and speaker count, which the proxy sets alike),
  # so on this proxy they are the same run as emorynlp.yaml
  for preset in meld_text_minilm emorynlp; do
    epochs=$(python -c "import yaml; print(yaml.safe_load(open('configs/$preset.yaml'))['train']['epochs'])")
    patience=$(python -c "import yaml; print(yaml.safe_load(open('configs/$preset.yaml'))['train']['patience'])")
    run="$OUT/$subset/$preset"
    mkdir -p "$run"
    # the preset as shipped, one run per seed
    test -f "$run/x1/summary.json" || multiemo train --config "configs/$preset.yaml" --run-dir "$run/x1" \
      --seeds "$SEEDS" dataset=meld data.root="$DATA/$subset" data.text="$STORE" data.validation=dev \
      model.num_classes=7 model.num_speakers=9 runtime.num_threads="$THREADS" > "$run/x1.log" 2>&1 \
      || { echo "failed: $run/x1 (see $run/x1.log)"; exit 1; }
    # 4x longer: each seed's run continued (--resume, which reaches what an uninterrupted run does)
    # with train.epochs and train.patience times 4, so it trains on where the preset stopped
    for seed in ${SEEDS//,/ }; do
      test -f "$run/x4/seed-$seed/.done" && continue
      rm -rf "$run/x4/seed-$seed"; mkdir -p "$run/x4"
      cp -r "$run/x1/seed-$seed" "$run/x4/seed-$seed"
      multiemo train --resume "$run/x4/seed-$seed" train.epochs=$((epochs * 4)) \
        train.patience=$((patience * 4)) >> "$run/x4.log" 2>&1 || { echo "failed: $run/x4 (see $run/x4.log)"; exit 1; }
      touch "$run/x4/seed-$seed/.done"
    done
  done
done
python experiments/presets_convergence/table.py "$OUT"
