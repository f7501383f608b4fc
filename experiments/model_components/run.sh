#!/usr/bin/env bash
# Real run (slow, not in CI): the model components compared in studies, on the same features,
# splits and seeds, with paired bootstrap tests against the reference.
#   1. context encoders on MELD's real transcripts (configs/studies/context_meld_text.yaml):
#      text-only MultiEMO with no context encoder, DialogueRNN, or the Transformer, 5 seeds each,
#      on two MiniLM stores of experiments/meld_text_minilm/run.sh: the fine-tuned one (the
#      preset's; its inputs carry 8 past utterances) and the frozen utterance-alone one (past=0);
#   2. fusions on the SYNTHETIC three-modality corpus of `multiemo demo --media`
#      (configs/studies/components_meld.yaml at the demo's model sizes): MultiEMO, the Transformer
#      context, concat fusion; once with the recipe's losses and once without Soft-HGR.
#
#   bash experiments/model_components/run.sh
#
# Needs $DATA (default data/meld_minilm) made by experiments/meld_text_minilm/run.sh. Rerun the
# same command to resume: finished trials are kept.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${DATA:-data/meld_minilm}
DEMO=${DEMO:-data/demo_media}
STUDIES=${STUDIES:-studies}
THREADS=${THREADS:-1}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS=$THREADS

multiemo sweep --config configs/studies/context_meld_text.yaml --study-dir "$STUDIES/context-meld-text" \
  data.root="$DATA" runtime.num_threads="$THREADS"
multiemo sweep --config configs/studies/context_meld_text.yaml --study-dir "$STUDIES/context-meld-text-p0" \
  data.root="$DATA" data.text=features/text_frozen_p0.safetensors runtime.num_threads="$THREADS"

test -f "$DEMO/data/corpus.json" || multiemo demo --media --out "$DEMO"
dims() {  # the demo's feature sizes (384-d text: multiemo[minilm] installed) and model sizes (its configs/train.yaml)
  echo dataset=demo-media data.root="$DEMO/data" model.text_dim=384 model.audio_dim=88 model.visual_dim=32 \
    model.num_classes=4 model.num_speakers=3 model.model_dim=32 model.hidden_dim=64 model.num_layers=1 \
    model.mlp_hidden=64 train.batch_size=8 train.lr=2e-3 train.epochs=100 train.patience=15 \
    runtime.num_threads="$THREADS"
}
# shellcheck disable=SC2046
multiemo sweep --config configs/studies/components_meld.yaml --study-dir "$STUDIES/components-synthetic" $(dims)
# shellcheck disable=SC2046
multiemo sweep --config configs/studies/components_meld.yaml --study-dir "$STUDIES/components-synthetic-nohgr" \
  $(dims) loss.hgr_weight=0 loss.ce_weight=0.7
