#!/usr/bin/env bash
# Reproduce the rows of the paper's Tables 1-3 (PAPER.md §7) with several seeds each:
# MultiEMO, "w/o MultiAttn" (concatenation), "w/o SWFC" (SWFC coefficient 0, its weight moved to CE),
# and the modality subsets of Table 3. Every run selects its epoch on validation and scores test once.
#
#   experiments/paper_tables/run.sh meld data/meld runs/paper-meld
#   experiments/paper_tables/run.sh iemocap data/iemocap runs/paper-iemocap
#
# DATA_ROOT holds corpus.json and features/{text,audio,visual}.safetensors, e.g. from
#   multiemo import-official --dataset meld --src MultiEMO/Data/MELD --out data/meld
# Extra key=value arguments after the three positional ones go to every run (e.g. runtime.device=cuda).
set -euo pipefail
dataset=${1:?dataset: meld or iemocap}; root=${2:?data root}; out=${3:?output folder}; shift 3
seeds=${SEEDS:-2023,2024,2025}
config=configs/${dataset}.yaml
run() { # name, overrides...
    local name=$1; shift
    if [ -f "$out/$name/summary.json" ]; then echo "skip $name (done)"; return; fi
    if [ -f "$out/$name/seeds.json" ]; then multiemo train --resume "$out/$name"; return; fi
    multiemo train --config "$config" --run-dir "$out/$name" --seeds "$seeds" "data.root=$root" "$@"
}
case $dataset in
    meld) no_swfc=(loss.swfc_weight=0 loss.ce_weight=0.7) ;;
    iemocap) no_swfc=(loss.swfc_weight=0 loss.ce_weight=0.6) ;;
    *) echo "unknown dataset $dataset" >&2; exit 2 ;;
esac
run multiemo "$@"
run without-multiattn model.multiattn=false "$@"
run without-swfc "${no_swfc[@]}" "$@"
for m in text audio visual text,audio text,visual; do
    run "modalities-${m/,/+}" "model.modalities=$m" "$@"
done
for d in "$out"/*/; do
    echo "== $(basename "$d")"
    multiemo report "$d"
done
