#!/usr/bin/env bash
# Real run (slow, not in CI): MiniLM text features for MELD from the raw CSVs, then MultiEMO
# text-only through the core trainer. The offline encoder, not the paper's RoBERTa-large.
#
#   MELD_CSV=/path/to/meld/csvs bash experiments/meld_text_minilm/run.sh [extra key=value ...]
#
# Extra key=value arguments go to the extraction (e.g. finetune.max_train_utterances=2400
# finetune.epochs=2 for a short CPU budget). Outputs under $DATA (default data/meld_minilm):
# corpus.json, features/text.safetensors, features/text-encoder/ (fine-tuned encoder), logs.
set -euo pipefail
cd "$(dirname "$0")/../.."
MELD_CSV=${MELD_CSV:-../shared/data/meld}
DATA=${DATA:-data/meld_minilm}
RUN=${RUN:-runs/meld_text_minilm}
THREADS=${THREADS:-2}
mkdir -p "$DATA"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS=$THREADS

start=$(date +%s)
test -f "$DATA/corpus.json" || multiemo corpus build --dataset meld --root "$MELD_CSV" --out "$DATA/corpus.json"
multiemo extract text --config configs/extract/meld_text_minilm.yaml corpus.path="$DATA/corpus.json" \
  out="$DATA/features/text.safetensors" num_threads="$THREADS" "$@" --no-progress
end=$(date +%s)
echo "extraction (fine-tuning included): $((end - start)) s" | tee "$DATA/timing.txt"
python - "$DATA" <<'PY' | tee -a "$DATA/timing.txt"
import json, sys
from pathlib import Path
from multiemo.data.store import FeatureStore
data = Path(sys.argv[1])
done = json.loads((data / "features/text-encoder/finetune.json").read_text())
print("fine-tuning:", done["seconds"], "s; best epoch", done["best_epoch"], "of",
      len(done["history"]), "; dev weighted-F1", round(100 * done["best_valid_weighted_f1"], 2))
for h in done["history"]:
    print("  epoch", h["epoch"], "train", h["train_seconds"], "s, dev w-F1",
          round(100 * h["valid_weighted_f1"], 2))
store = FeatureStore(data / "features/text.safetensors")
print("store:", len(store), "utterances, dim", store.dim, ", present", int(store.present.sum()))
PY

multiemo train --config configs/meld.yaml --run-dir "$RUN" data.root="$DATA" \
  model.modalities=text model.text_dim=384 runtime.num_threads="$THREADS"
