"""Every shipped YAML loads into its dataclass, and the training presets build the paper's model."""

from pathlib import Path

import pytest

from multiemo.config import Config, load
from multiemo.model import build_model, count_parameters

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


@pytest.mark.parametrize("name,params", [("meld.yaml", 10_392_583), ("iemocap.yaml", 29_670_918)])
def test_training_presets_build_the_official_model(name, params):
    cfg = load(Config, CONFIGS / name)
    assert cfg.dataset == name.split(".")[0]
    assert count_parameters(build_model(cfg.model)) == params


def test_every_extraction_config_loads():
    from feature_extraction.audio import AudioJobConfig
    from feature_extraction.text import TextExtractConfig
    from feature_extraction.visual import VisualJobConfig

    kinds = {"text": TextExtractConfig, "audio": AudioJobConfig, "visual": VisualJobConfig}
    files = sorted((CONFIGS / "extract").glob("*.yaml"))
    assert files
    for path in files:
        kind = next(k for k in kinds if f"_{k}" in path.stem)
        load(kinds[kind], path)


def test_every_training_config_loads():
    files = sorted(CONFIGS.glob("*.yaml"))
    assert len(files) >= 2
    for path in files:
        load(Config, path)


# a representative bad value of every training-config field with a range, and the key it names
BAD_VALUES = [
    "model.text_dim=0", "model.audio_dim=-1", "model.visual_dim=0", "model.model_dim=0",
    "model.num_heads=0", "model.hidden_dim=0", "model.num_layers=0", "model.mlp_hidden=0",
    "model.num_classes=1", "model.num_speakers=0", "model.dropout=1", "model.dropout=-0.1",
    "model.dropout_rec=1.5", "model.dropout=nan",
    "loss.ce_weight=-0.1", "loss.swfc_weight=-1", "loss.hgr_weight=-0.5", "loss.temperature=0",
    "loss.gamma=-1", "loss.alpha=-0.2", "loss.ce_class_weight_power=-1",
    "train.weight_decay=-1e-5", "train.plateau_factor=0", "train.plateau_factor=1",
    "train.plateau_patience=-1", "train.plateau_threshold=-1e-6", "train.seed=-1",
    "train.seed=4294967296", "train.lr=0",
    "data.valid_seed=-1", "runtime.num_threads=-1",
]


def _train(tmp_path, capsys, *overrides):
    from multiemo.cli import main
    code = main(["train", "--config", str(CONFIGS / "meld.yaml"), "--run-dir", str(tmp_path / "run"),
                 *overrides])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("override", BAD_VALUES)
def test_out_of_range_values_are_one_line_naming_the_key(tmp_path, capsys, override):
    code, err = _train(tmp_path, capsys, override)
    key, value = override.split("=")
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert key in err and "must be" in err, err
    assert not (tmp_path / "run").exists()


def test_all_loss_weights_zero_is_one_line(tmp_path, capsys):
    code, err = _train(tmp_path, capsys, "loss.ce_weight=0", "loss.swfc_weight=0", "loss.hgr_weight=0")
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "loss.ce_weight, loss.swfc_weight and loss.hgr_weight are all 0" in err


def test_the_range_messages(tmp_path, capsys):
    assert "train.seed must be in [0, 4294967295], got -1" in _train(tmp_path, capsys, "train.seed=-1")[1]
    assert "model.dropout must be in [0, 1), got 1.0" in _train(tmp_path, capsys, "model.dropout=1")[1]
    assert "model.num_classes must be at least 2, got 1" in \
        _train(tmp_path, capsys, "model.num_classes=1")[1]
    assert "train.plateau_factor must be in (0, 1), got 0.0" in \
        _train(tmp_path, capsys, "train.plateau_factor=0")[1]
