#!/usr/bin/env bash
# Real check (slow, not in CI): export a trained MELD text model and predict MELD's test split
# from its raw transcripts; the predictions must be those the run scored at training time.
#
#   bash experiments/meld_text_predict/run.sh [RUN_DIR]
#
# RUN_DIR defaults to the sweep's chosen configuration, seed 2023
# (studies/meld_text_sweep/final/seed-2023, from experiments/meld_text_sweep/run.sh), whose
# features are data/meld_minilm/features/text.safetensors (experiments/meld_text_minilm/run.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
RUN=${1:-studies/meld_text_sweep/final/seed-2023}
OUT=${OUT:-runs/meld_text_predict}
THREADS=${THREADS:-2}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS=$THREADS
rm -rf "$OUT" && mkdir -p "$OUT"

multiemo export "$RUN" --out "$OUT/model"
# MELD's test dialogues, from the corpus built from the raw CSVs, as a conversation file
python - "$RUN" "$OUT/meld_test.csv" <<'PY'
import sys, yaml
from pathlib import Path
from multiemo.data.corpus import Corpus
from multiemo.data.conversations import write_conversations
cfg = yaml.safe_load((Path(sys.argv[1]) / "config.yaml").read_text())
corpus = Corpus.load(Path(cfg["data"]["root"]) / cfg["data"]["corpus"])
test = Corpus(corpus.name, corpus.labels, tuple(d for d in corpus.dialogues if d.split == "test"))
write_conversations(test, sys.argv[2])
PY
start=$(date +%s)
multiemo predict --model "$OUT/model" --input "$OUT/meld_test.csv" --out "$OUT/pred" --plots --no-progress
echo "predict: $(( $(date +%s) - start )) s" | tee "$OUT/timing.txt"
python - "$RUN/predictions_test.csv" "$OUT/pred/predictions.csv" <<'PY' | tee -a "$OUT/timing.txt"
import csv, sys
theirs = list(csv.DictReader(open(sys.argv[1], encoding="utf-8")))
ours = {r["utterance_id"]: r for r in csv.DictReader(open(sys.argv[2], encoding="utf-8"))}
labels = [k[2:] for k in theirs[0] if k.startswith("p_")]
diff = max(abs(float(ours[r["utterance_id"]][f"p_{c}"]) - float(r[f"p_{c}"])) for r in theirs for c in labels)
same = sum(ours[r["utterance_id"]]["prediction"] == r["prediction"] for r in theirs)
print(f"{len(theirs)} test utterances: max |p_predict - p_run| = {diff:.1e}; same prediction for {same}")
assert diff <= 1e-5 and same == len(theirs)
PY
