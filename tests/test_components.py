"""Model components chosen by name: the Transformer context encoder (against a literal reference,
padding, causality), the config keys that choose components, and training with them."""

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml

from multiemo.cli import main as cli
from multiemo.config import Config, ConfigError, ModelConfig, build, load
from multiemo.model import build_model, count_parameters
from multiemo.model.transformer_context import TransformerContext
from multiemo.synthetic import make_synthetic_corpus
from builders import IEMOCAP, MELD, random_batch, small

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


# -- the Transformer context encoder ------------------------------------------------------------

def layer_norm(x, norm):
    mean = x.mean()
    var = ((x - mean) ** 2).mean()
    return (x - mean) / torch.sqrt(var + norm.eps) * norm.weight + norm.bias


def reference_transformer_context(enc: TransformerContext, u, speaker, lengths):
    """Literal per-dialogue, per-utterance, per-head transcription of the encoder with plain
    matrix-vector products, sharing ``enc``'s parameters. u: (B, U, D) → (B, U, D)."""
    B, U, D = u.shape
    out = torch.zeros_like(u)
    for b in range(B):
        n = int(lengths[b])
        x = []
        for t in range(n):  # sinusoidal positions, written out
            pe = torch.zeros(D, dtype=u.dtype)
            for i in range(0, D, 2):
                pe[i] = math.sin(t / 10000 ** (i / D))
                if i + 1 < D:
                    pe[i + 1] = math.cos(t / 10000 ** (i / D))
            x.append(u[b, t] + pe)
        for layer in enc.layers:
            H = layer.num_heads
            d = D // H
            W, bias = layer.qkv.weight, layer.qkv.bias
            new = []
            for i in range(n):
                keys = range(i + 1) if enc.causal else range(n)
                heads = []
                for h in range(H):
                    rows = slice(h * d, (h + 1) * d)
                    q = W[rows] @ x[i] + bias[rows]
                    k = [W[D:2 * D][rows] @ x[j] + bias[D:2 * D][rows] for j in keys]
                    v = [W[2 * D:][rows] @ x[j] + bias[2 * D:][rows] for j in keys]
                    scores = torch.stack([q @ k_j / math.sqrt(d)
                                          + (layer.speaker_bias[h] if speaker[b, i] == speaker[b, j] else 0.0)
                                          for k_j, j in zip(k, keys)])
                    weights = torch.softmax(scores, dim=0)
                    heads.append(sum(w * v_j for w, v_j in zip(weights, v)))
                attended = layer.out_proj.weight @ torch.cat(heads) + layer.out_proj.bias
                h1 = layer_norm(x[i] + attended, layer.attn_norm)
                ffn = layer.ffn.linear2.weight @ torch.relu(layer.ffn.linear1.weight @ h1 + layer.ffn.linear1.bias) \
                    + layer.ffn.linear2.bias
                new.append(layer_norm(h1 + ffn, layer.ffn_norm))
            x = new
        for t in range(n):
            out[b, t] = x[t]
    return out


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
def test_transformer_context_matches_a_literal_reference_values_and_gradients(causal):
    torch.manual_seed(0)
    B, U, D, H = 3, 5, 8, 2
    enc = TransformerContext(D, H, num_layers=2, hidden_dim=12, causal=causal).double()
    with torch.no_grad():  # a same-speaker bias that matters (it starts at 0)
        for layer in enc.layers:
            layer.speaker_bias.copy_(torch.tensor([0.7, -1.3]))
    lengths = torch.tensor([5, 2, 4])
    mask = torch.arange(U)[None] < lengths[:, None]
    u = (torch.randn(B, U, D, dtype=torch.float64) * mask[..., None]).requires_grad_()
    speaker = torch.randint(0, 3, (B, U)) * mask
    weights = torch.randn(B, U, D, dtype=torch.float64) * mask[..., None]

    ours = enc(u, speaker, lengths)
    ours_grads = torch.autograd.grad((ours * weights).sum(), [u, *enc.parameters()])
    ref = reference_transformer_context(enc, u, speaker, lengths)
    ref_grads = torch.autograd.grad((ref * weights).sum(), [u, *enc.parameters()])

    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)
    assert ours[~mask].abs().max() == 0  # zeros at padding
    for (name, _), a, b in zip([("u", None), *enc.named_parameters()], ours_grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10, msg=f"gradient of {name}")
    assert ours_grads[-1].abs().sum() > 0  # the output norms' gradients are not trivially 0
    assert any(g.abs().sum() > 0 for n, g in zip([n for n, _ in enc.named_parameters()], ours_grads[1:])
               if n.endswith("speaker_bias"))


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
def test_transformer_context_padding_never_changes_a_real_utterance(causal):
    torch.manual_seed(0)
    D = 8
    enc = TransformerContext(D, 2, num_layers=2, hidden_dim=12, causal=causal).double().eval()
    u = torch.randn(2, 4, D, dtype=torch.float64)
    speaker = torch.randint(0, 3, (2, 4))
    lengths = torch.tensor([4, 2])
    alone = enc(u, speaker, lengths)
    # the same dialogues padded to 9 utterances (garbage in the padding), beside a longer one
    big_u = torch.randn(3, 9, D, dtype=torch.float64) * 1e3
    big_u[:2, :4] = u
    big_speaker = torch.randint(0, 3, (3, 9))
    big_speaker[:2, :4] = speaker
    big_u[1, 2:] = -7.0  # dialogue 1's padding, right after its 2 real utterances
    out = enc(big_u, big_speaker, torch.tensor([4, 2, 9]))
    for b, n in enumerate([4, 2]):
        torch.testing.assert_close(out[b, :n], alone[b, :n], rtol=1e-12, atol=1e-12)
    assert out[1, 2:].abs().max() == 0


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
def test_a_later_utterance_changes_earlier_outputs_only_without_causality(causal):
    torch.manual_seed(0)
    enc = TransformerContext(8, 2, num_layers=2, hidden_dim=12, causal=causal).double().eval()
    u = torch.randn(1, 6, 8, dtype=torch.float64)
    speaker = torch.tensor([[0, 1, 0, 1, 2, 0]])
    lengths = torch.tensor([6])
    before = enc(u, speaker, lengths)
    changed = u.clone()
    changed[0, 4] += 3.0
    after = enc(changed, speaker, lengths)
    assert not torch.allclose(after[0, 4], before[0, 4])
    if causal:
        torch.testing.assert_close(after[0, :4], before[0, :4], rtol=0, atol=0)
    else:
        assert not torch.allclose(after[0, :4], before[0, :4])


def test_the_same_speaker_bias_reads_only_whether_speakers_match():
    torch.manual_seed(0)
    enc = TransformerContext(8, 2, num_layers=1, hidden_dim=12).double().eval()
    with torch.no_grad():
        enc.layers[0].speaker_bias.fill_(2.0)
    u = torch.randn(1, 4, 8, dtype=torch.float64)
    lengths = torch.tensor([4])
    a = enc(u, torch.tensor([[0, 1, 0, 2]]), lengths)
    renamed = enc(u, torch.tensor([[2, 0, 2, 1]]), lengths)  # the same turns, other party numbers
    other = enc(u, torch.tensor([[0, 0, 1, 2]]), lengths)  # different turns
    torch.testing.assert_close(a, renamed, rtol=0, atol=0)
    assert not torch.allclose(a[0, 1:], other[0, 1:])


# -- choosing components in the config ----------------------------------------------------------

def model_config(path, *overrides):
    return load(Config, CONFIGS / path, list(overrides)).model


def context_of(cfg: ModelConfig) -> dict:
    model = build_model(small(cfg))
    return {m: type(model.context[m]).__name__ if m in model.context else "none" for m in cfg.modalities}


def test_the_default_assembly_is_the_released_model_and_text_context_still_decides_text():
    assert context_of(MELD) == {"text": "none", "audio": "ContextEncoder", "visual": "ContextEncoder"}
    assert context_of(IEMOCAP) == {m: "ContextEncoder" for m in ("text", "audio", "visual")}
    assert type(build_model(small(MELD)).fusion).__name__ == "MultiAttn"
    # spelling the defaults out builds the same model, parameter for parameter
    spelled = replace(MELD, context={"text": "none", "audio": "dialoguernn", "visual": "dialoguernn"},
                      fusion="multiattn", classifier="mlp")
    torch.manual_seed(0)
    a = build_model(spelled).state_dict()
    torch.manual_seed(0)
    b = build_model(MELD).state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert count_parameters(build_model(spelled)) == 10_392_583


@pytest.mark.parametrize("name,kind", [("dialoguernn", "ContextEncoder"), ("transformer", "TransformerContext"),
                                       ("none", "none")])
def test_an_explicit_context_reaches_text_even_where_the_preset_says_text_context_false(name, kind):
    cfg = model_config("meld_text_minilm.yaml", "model.modalities=[text]", f"model.context={name}")
    assert cfg.text_context is False
    assert context_of(cfg) == {"text": kind}


def test_a_per_modality_context_and_what_it_leaves_out():
    cfg = model_config("meld.yaml", "model.context={text: transformer, visual: none}")
    assert context_of(cfg) == {"text": "TransformerContext", "audio": "ContextEncoder", "visual": "none"}
    cfg = model_config("meld.yaml", "model.context.audio=transformer")
    assert context_of(cfg) == {"text": "none", "audio": "TransformerContext", "visual": "ContextEncoder"}
    # a mapping may name a modality the model does not use (a study varies modalities beside it)
    assert context_of(model_config("meld.yaml", "model.modalities=[text]", "model.context={audio: none}")) \
        == {"text": "none"}


@pytest.mark.parametrize("override,message", [
    ("model.context=lstm", "model.context: unknown name 'lstm'; choose one of dialoguernn, transformer, none"),
    ("model.context={text: gru}", "model.context.text: unknown name 'gru'"),
    ("model.context={speech: none}", "model.context: 'speech' is not a modality"),
    ("model.fusion=sum", "model.fusion: unknown name 'sum'; choose one of multiattn, concat"),
    ("model.classifier=svm", "model.classifier: unknown name 'svm'; choose one of mlp"),
    ("model.context_layers=0", "model.context_layers must be at least 1"),
])
def test_an_unknown_component_is_a_one_line_config_error(override, message):
    with pytest.raises(ConfigError, match="^" + "[^\n]*" + message.replace("(", r"\(").replace(")", r"\)")):
        model_config("meld.yaml", override)


def test_multiattn_false_is_concat_fusion_and_says_so(caplog):
    old = model_config("meld.yaml", "model.multiattn=false")
    new = model_config("meld.yaml", "model.fusion=concat")
    torch.manual_seed(0)
    a = build_model(small(old))
    assert "model.multiattn=false is the older name of model.fusion=concat" in caplog.text
    torch.manual_seed(0)
    b = build_model(small(new))
    assert type(a.fusion).__name__ == type(b.fusion).__name__ == "ConcatFusion"
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not any(k.startswith("fusion.") for k in sa)
    with pytest.raises(ConfigError, match="model.multiattn=false means model.fusion=concat, but model.fusion=multiattn"):
        model_config("meld.yaml", "model.multiattn=false", "model.fusion=multiattn")


@pytest.mark.parametrize("cfg", [
    replace(MELD, context="transformer"), replace(IEMOCAP, context="transformer", context_layers=2),
    replace(MELD, context={"text": "transformer", "audio": "dialoguernn", "visual": "none"}),
    replace(MELD, fusion="concat"), replace(IEMOCAP, context="none", fusion="concat")],
    ids=["meld-transformer", "iemocap-transformer-2", "mixed", "concat", "none-concat"])
def test_every_assembly_trains_and_ignores_padding(cfg):
    torch.manual_seed(0)
    model = build_model(small(cfg))
    feats, speaker, mask = random_batch(3, 6, [6, 4, 1])
    out = model(feats, speaker, mask)
    out.logits[mask].sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    model.eval()
    with torch.no_grad():
        alone = model({m: f[1:2, :4] for m, f in feats.items()}, speaker[1:2, :4], mask[1:2, :4])
        together = model(feats, speaker, mask)
    torch.testing.assert_close(together.logits[1, :4], alone.logits[0], rtol=1e-5, atol=1e-5)


# -- through the command line -------------------------------------------------------------------

DIMS = {"text": 12, "audio": 10, "visual": 14}
SMALL = ["model.text_dim=12", "model.audio_dim=10", "model.visual_dim=14", "model.num_classes=4",
         "model.num_speakers=3", "model.model_dim=16", "model.hidden_dim=32", "model.mlp_hidden=32",
         "train.batch_size=8", "train.lr=0.003", "train.epochs=2"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    make_synthetic_corpus(root, dialogues={"train": 20, "dev": 4, "test": 6}, dims=DIMS,
                          num_classes=4, num_speakers=3, lengths=(1, 8), seed=1)
    return root


@pytest.mark.parametrize("overrides,context", [
    (["model.modalities=[text]", "model.context=transformer"], "transformer"),
    (["model.modalities=[text]", "model.context=dialoguernn"], "dialoguernn"),
    (["model.context={text: transformer, audio: dialoguernn, visual: none}", "model.fusion=concat"],
     {"text": "transformer", "audio": "dialoguernn", "visual": "none"}),
])
def test_train_with_chosen_components_records_them(root, tmp_path, overrides, context):
    run = tmp_path / "run"
    assert cli(["train", "--config", "configs/meld.yaml", "--run-dir", str(run), f"data.root={root}",
                *SMALL, *overrides]) == 0
    saved = yaml.safe_load((run / "config.yaml").read_text())["model"]
    assert saved["context"] == context
    info = json.loads((run / "run.json").read_text())
    cfg = build(Config, yaml.safe_load((run / "config.yaml").read_text()))
    assert info["num_parameters"] == count_parameters(build_model(cfg.model))


@pytest.mark.parametrize("overrides,warned", [
    (["model.fusion=concat"], True),                                 # text has no context encoder
    (["model.fusion=concat", "loss.hgr_weight=0", "loss.ce_weight=0.7"], False),
    (["model.fusion=concat", "model.context=dialoguernn"], False),   # every input bounded
    ([], False),                                                     # MultiAttn normalises
])
def test_concat_fusion_on_bare_projections_warns_about_the_unbounded_soft_hgr(root, tmp_path, capsys,
                                                                            overrides, warned):
    assert cli(["train", "--config", "configs/meld.yaml", "--run-dir", str(tmp_path / "run"),
                f"data.root={root}", *SMALL, "train.epochs=1", *overrides]) == 0
    err = capsys.readouterr().err
    assert ("concat fusion with the released Soft-HGR" in err) == warned, err
    if warned:
        assert "unnormalised text vectors" in err and "loss.hgr_weight=0" in err


# -- written before the components: state_dicts and a model folder of 55f6d61 -------------------

OLD = Path(__file__).resolve().parent / "data" / "old_55f6d61"  # made by its make.py


@pytest.mark.parametrize("name", ["meld", "iemocap", "concat"])
def test_a_state_dict_saved_before_the_components_loads_and_gives_the_same_outputs(name):
    from safetensors.torch import load_file
    tensors = load_file(str(OLD / "old_models.safetensors"))
    cfg = build(ModelConfig, json.loads((OLD / "old_models.json").read_text())[name])
    prefix = f"{name}/state/"
    old_state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    torch.manual_seed(0)  # the old code built these with seed 0: the same seed, the same weights
    model = build_model(cfg).eval()
    new_state = model.state_dict()
    assert set(new_state) == set(old_state)
    assert all(torch.equal(new_state[k], old_state[k]) for k in old_state)
    model.load_state_dict(old_state, strict=True)
    with torch.no_grad():
        out = model({m: tensors[f"batch/{m}"] for m in cfg.modalities}, tensors["batch/speaker_mask"],
                    tensors["batch/mask"])
    torch.testing.assert_close(out.logits, tensors[f"{name}/logits"], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out.z, tensors[f"{name}/z"], rtol=1e-6, atol=1e-6)


def test_a_model_folder_exported_before_the_components_predicts_as_it_did(tmp_path):
    import shutil

    from multiemo.recognizer import Recognizer
    folder = shutil.copytree(OLD / "old_model_folder", tmp_path / "model")
    expected = json.loads((OLD / "old_model_folder_predictions.json").read_text())
    recognizer = Recognizer.from_pretrained(folder, device="cpu")
    assert type(recognizer.network.context["text"]).__name__ == "ContextEncoder"  # its config: text_context
    predictions = recognizer.predict(expected["rows"])
    assert len(predictions) == len(expected["probabilities"])
    for p, old in zip(predictions, expected["probabilities"]):
        assert p.probabilities == pytest.approx(old, abs=1e-5)


# -- export and predict carry the components ----------------------------------------------------

@pytest.mark.parametrize("overrides,kind", [
    (["model.context=transformer", "model.context_layers=2"], "TransformerContext"),
    (["model.fusion=concat"], "ConcatFusion")], ids=["transformer-context", "concat-fusion"])
def test_an_exported_variant_is_rebuilt_by_the_recognizer_with_the_same_outputs(trained, tmp_path, overrides, kind):
    from builders import TINY_TRAIN, read_csv
    from multiemo.recognizer import Recognizer
    run, model = tmp_path / "run", tmp_path / "model"
    assert cli(["train", "--config", "configs/emorynlp.yaml", "--run-dir", str(run), f"data.root={trained['data']}",
                *TINY_TRAIN, "train.lr=3e-3", "dataset=mine", "model.num_classes=3", "model.num_speakers=3",
                *overrides]) == 0
    assert cli(["export", str(run), "--out", str(model)]) == 0
    config = json.loads((model / "config.json").read_text())
    components = {"transformer-context": {"context": {"text": "transformer"}, "fusion": "multiattn"},
                  "concat-fusion": {"context": {"text": "dialoguernn"}, "fusion": "concat"}}
    expected = components["transformer-context" if kind == "TransformerContext" else "concat-fusion"]
    assert config["components"] == {**expected, "classifier": "mlp"}
    card = f"context: text {expected['context']['text']}; fusion: {expected['fusion']}; classifier: mlp"
    assert card in (model / "README.md").read_text()
    recognizer = Recognizer.from_pretrained(model, device="cpu")
    built = {type(m).__name__ for m in recognizer.network.modules()}
    assert kind in built
    if kind == "TransformerContext":
        assert len(recognizer.network.context["text"].layers) == 2
    rows = read_csv(trained["source"])
    predictions = {p.utterance_id: p for p in recognizer.predict(
        [{k: r[k] for k in ("dialogue_id", "utterance_index", "speaker", "text")} for r in rows])}
    theirs = read_csv(run / "predictions_test.csv")
    assert theirs
    for row in theirs:
        p = predictions[row["utterance_id"]]
        assert [p.probabilities[c] for c in recognizer.labels] == \
            pytest.approx([float(row[f"p_{c}"]) for c in recognizer.labels], abs=1e-5)
