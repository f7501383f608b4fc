#!/usr/bin/env bash
# Real run (slow, not in CI): MiniLM text features of MELD from the raw CSVs, frozen and
# fine-tuned, with one validation split for the whole chain (MELD's dev split: the fine-tuning
# learns from train only and selects on dev, as the trainer does), then MultiEMO text-only:
#   1. four frozen extractions (context and speaker variants) and one fine-tuned one;
#   2. a sweep on the frozen stores (sweep_frozen.yaml: the store is a choice, with the training
#      settings), chosen on dev, then 5 seeds of the choice and of the preset, each scored on test once;
#   3. the preset (configs/meld_text_minilm.yaml) on the fine-tuned store, 5 seeds, and a sweep of
#      its training settings on that store (sweep_finetuned.yaml), chosen on dev, 5 seeds.
#
#   bash experiments/meld_text_minilm/run.sh
#
# Outputs under $DATA (default data/meld_minilm), $STUDY and $RUN. Rerun the same command to
# resume: finished extractions, trials and runs are kept.
set -euo pipefail
cd "$(dirname "$0")/../.."
MELD_CSV=${MELD_CSV:-data/raw/meld}  # the MELD CSVs ({train,dev,test}_sent_emo.csv)
DATA=${DATA:-data/meld_minilm}
STUDY=${STUDY:-studies/meld_text_frozen}
RUN=${RUN:-runs/meld_text_minilm}
THREADS=${THREADS:-2}
FT_EPOCHS=${FT_EPOCHS:-2}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS=$THREADS
mkdir -p "$DATA/features"
test -f "$DATA/corpus.json" || multiemo corpus build --dataset meld --root "$MELD_CSV" --out "$DATA/corpus.json"

extract() {  # name, then key=value settings of configs/extract/meld_text_minilm.yaml
  local name=$1; shift
  test -f "$DATA/features/$name.safetensors" && return
  local start; start=$(date +%s)
  multiemo extract text --config configs/extract/meld_text_minilm.yaml corpus.path="$DATA/corpus.json" \
    out="$DATA/features/$name.safetensors" num_threads="$THREADS" --no-progress "$@"
  echo "$name: $(( $(date +%s) - start )) s" | tee -a "$DATA/timing.txt"
}
extract text_frozen_p0 mode=frozen past=0
extract text_frozen_p8 mode=frozen past=8
extract text_frozen_p4f4 mode=frozen past=4 future=4
extract text_frozen_p0nospk mode=frozen past=0 speakers=false
extract text_frozen_p0first mode=frozen past=0 pooling=first      # [CLS] instead of the mean
extract text mode=finetune finetune.epochs="$FT_EPOCHS"          # validation: dev (the config)

multiemo sweep --config experiments/meld_text_minilm/sweep_frozen.yaml --study-dir "$STUDY" \
  data.root="$DATA" runtime.num_threads="$THREADS"
test -f "$RUN/finetuned/summary.json" || multiemo train --config configs/meld_text_minilm.yaml \
  --run-dir "$RUN/finetuned" --seeds 2023,2024,2025,2026,2027 data.root="$DATA" runtime.num_threads="$THREADS"
multiemo sweep --config experiments/meld_text_minilm/sweep_finetuned.yaml --study-dir "$STUDY-finetuned" \
  data.root="$DATA" runtime.num_threads="$THREADS"
# pooling: the preset on the utterance alone, [CLS] against mean pooling (compare their validation)
for store in text_frozen_p0first text_frozen_p0; do
  test -f "$RUN/pooling-$store/summary.json" || multiemo train --config configs/meld_text_minilm.yaml \
    --run-dir "$RUN/pooling-$store" --seeds 2023,2024,2025 data.root="$DATA" \
    data.text="features/$store.safetensors" runtime.num_threads="$THREADS"
done
