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
