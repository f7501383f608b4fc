#!/usr/bin/env bash
# Real run (slow, not in CI): the sweep of experiments/meld_text_sweep/sweep.yaml on the MiniLM
# MELD text features that experiments/meld_text_minilm/run.sh writes to data/meld_minilm.
#   bash experiments/meld_text_sweep/run.sh [--workers 2] [key=value ...]
# Rerun the same command to resume after a crash. Results: $STUDY/summary.md (default
# studies/meld_text_sweep).
set -euo pipefail
cd "$(dirname "$0")/../.."
STUDY=${STUDY:-studies/meld_text_sweep}
test -f data/meld_minilm/features/text.safetensors || {
    echo "no data/meld_minilm/features/text.safetensors: run experiments/meld_text_minilm/run.sh first" >&2; exit 2; }
start=$(date +%s)
multiemo sweep --config experiments/meld_text_sweep/sweep.yaml --study-dir "$STUDY" "$@"
echo "sweep wall time: $(( $(date +%s) - start )) s" | tee -a "$STUDY/timing.txt"
