"""Every shipped YAML loads into its dataclass, and the training presets build the paper's model."""

import subprocess
import sys
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


# -- shipped configs by name: multiemo/config_files.py, `multiemo configs ls|cp` -----------------

def _cli(capsys, *argv):
    from multiemo.cli import main
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_every_file_of_configs_is_a_shipped_name():
    from multiemo.config_files import find_config, names, shipped_dir

    files = sorted(p.relative_to(CONFIGS).with_suffix("").as_posix() for p in CONFIGS.rglob("*.yaml"))
    assert shipped_dir() == CONFIGS  # a checkout reads configs/ itself: one source
    assert sorted(names()) == files and "sweeps/meld" in files and "extract/meld_text" in files
    for name in files:
        assert find_config(name) == CONFIGS / f"{name}.yaml"
        assert find_config(f"configs/{name}.yaml", relative_to="/nonexistent") == CONFIGS / f"{name}.yaml"


def test_a_name_loads_the_same_config_as_its_path():
    from multiemo.config_files import find_config
    assert load(Config, find_config("meld")) == load(Config, CONFIGS / "meld.yaml")
    assert load(Config, find_config("iemocap.yaml")).dataset == "iemocap"


def test_a_path_that_exists_wins_over_a_shipped_name(tmp_path, monkeypatch):
    from multiemo.config_files import find_config
    monkeypatch.chdir(tmp_path)
    (tmp_path / "meld.yaml").write_text("dataset: mine\n")
    (tmp_path / "sweeps").mkdir()
    (tmp_path / "sweeps" / "meld").write_text("dataset: mine\n")
    assert find_config("meld.yaml") == Path("meld.yaml")  # the file here, not the shipped one
    assert find_config("sweeps/meld") == Path("sweeps/meld")
    assert find_config("meld") == CONFIGS / "meld.yaml"  # no file called "meld": the name


def test_the_command_line_takes_a_name(tmp_path, capsys):
    # the shipped file is loaded: its data.corpus under the data.root given here is what is missing
    code, _, err = _cli(capsys, "train", "--config", "meld", "--run-dir", str(tmp_path / "r"),
                        f"data.root={tmp_path / 'nowhere'}")
    assert code == 2 and f"{tmp_path / 'nowhere' / 'corpus.json'} does not exist" in err, err
    code, _, err = _cli(capsys, "sweep", "--config", "sweeps/meld", "--study-dir", str(tmp_path / "s"),
                        f"data.root={tmp_path / 'nowhere'}")
    assert code == 2 and f"{tmp_path / 'nowhere' / 'corpus.json'} does not exist" in err, err
    code, _, err = _cli(capsys, "extract", "text", "--config", "extract/meld_text",
                        f"corpus.path={tmp_path / 'none.json'}")
    assert code == 2 and f"{tmp_path / 'none.json'} does not exist" in err, err


def test_an_unknown_name_is_one_line_with_the_close_names(tmp_path, capsys):
    code, _, err = _cli(capsys, "sweep", "--config", "sweeps/meldd", "--study-dir", str(tmp_path / "s"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "config 'sweeps/meldd': no such file, nor a shipped config of that name" in err
    assert "close names: sweeps/meld" in err and "multiemo configs ls" in err
    assert not (tmp_path / "s").exists()


def test_configs_ls_lists_every_name_with_its_command(capsys):
    from multiemo.config_files import names
    code, out, _ = _cli(capsys, "configs", "ls")
    assert code == 0
    listed = [line.split()[0] for line in out.splitlines() if line.startswith("  ")]
    assert sorted(listed) == sorted(names())
    assert "multiemo train --config NAME" in out and "multiemo sweep --config NAME" in out
    assert "MultiEMO on MELD: the official recipe." in out


def test_configs_cp_copies_and_refuses_to_overwrite(tmp_path, capsys):
    dest = tmp_path / "my_meld.yaml"
    assert _cli(capsys, "configs", "cp", "meld", str(dest))[0] == 0
    assert dest.read_text() == (CONFIGS / "meld.yaml").read_text()
    dest.write_text("dataset: edited\n")
    code, _, err = _cli(capsys, "configs", "cp", "meld", str(dest))
    assert code == 2 and "exists" in err and "--force" in err and len(err.strip().splitlines()) == 1
    assert dest.read_text() == "dataset: edited\n"  # untouched
    assert _cli(capsys, "configs", "cp", "meld", str(dest), "--force")[0] == 0
    assert dest.read_text() == (CONFIGS / "meld.yaml").read_text()
    assert _cli(capsys, "configs", "cp", "extract/meld_text", str(tmp_path))[0] == 0  # into a folder
    assert (tmp_path / "meld_text.yaml").read_text() == (CONFIGS / "extract" / "meld_text.yaml").read_text()
    code, _, err = _cli(capsys, "configs", "cp", "meldd", str(tmp_path / "x.yaml"))
    assert code == 2 and "close names: meld" in err and not (tmp_path / "x.yaml").exists()


@pytest.mark.parametrize("name", ["sweeps/meld", "sweeps/iemocap", "studies/paper_tables_meld",
                                  "studies/paper_tables_iemocap"])
def test_a_copied_sweep_still_finds_its_base(tmp_path, capsys, monkeypatch, name):
    import yaml

    from multiemo.sweep.spec import load_spec
    elsewhere = tmp_path / "far" / "away"
    elsewhere.mkdir(parents=True)
    assert _cli(capsys, "configs", "cp", name, str(elsewhere / "mine.yaml"))[0] == 0
    shipped_base = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())["base"]
    copied = yaml.safe_load((elsewhere / "mine.yaml").read_text())
    assert copied["base"] == Path(shipped_base).stem  # ../meld.yaml → the shipped name "meld"
    monkeypatch.chdir(tmp_path)  # no configs/ here: only the shipped name can find it
    spec = load_spec(elsewhere / "mine.yaml")
    assert Path(spec.base).resolve() == (CONFIGS / f"{name}.yaml").parent.joinpath(shipped_base).resolve()
    assert spec.base_config() == load_spec(CONFIGS / f"{name}.yaml").base_config()


def test_a_sweeps_base_beside_it_wins_and_a_missing_one_is_named(tmp_path):
    import yaml

    from multiemo.sweep.spec import SweepError, load_spec
    (tmp_path / "meld.yaml").write_text("dataset: meld\ntrain: {epochs: 3}\n")
    sweep = {"base": "meld.yaml", "trials": 2, "space": {"train.lr": {"low": 1e-4, "high": 1e-3}}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(sweep))
    assert load_spec(tmp_path / "s.yaml").base_config().train.epochs == 3  # the file beside it
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({**sweep, "base": "meld_nowhere.yaml"}))
    with pytest.raises(SweepError, match=r"s.yaml: base: config 'meld_nowhere.yaml' .*no such file"):
        load_spec(tmp_path / "s.yaml")


def test_the_wheel_packages_are_the_source_tree_and_the_configs():
    """pyproject.toml lists the packages by hand (to map configs/ into multiemo/configs): a new
    subpackage or config folder left out of that list would be missing from a wheel."""
    import tomllib

    from setuptools import find_packages

    repo = CONFIGS.parent
    listed = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]
    code = find_packages(str(repo), include=["multiemo*", "feature_extraction*"])
    folders = ["multiemo.configs"] + [f"multiemo.configs.{p.name}" for p in CONFIGS.iterdir()
                                      if p.is_dir() and any(p.glob("*.yaml"))]
    assert sorted(listed["packages"]) == sorted(code + folders)
    assert listed["package-dir"] == {"multiemo.configs": "configs"}
    assert all(listed["package-data"][f] == ["*.yaml"] for f in folders)


@pytest.mark.slow
def test_a_wheel_carries_every_shipped_config(tmp_path):
    """Build a wheel from a copy of the source (no network, the installed setuptools) and read it."""
    import shutil
    import subprocess
    import sys
    import zipfile

    repo = CONFIGS.parent
    src = tmp_path / "src"
    for part in ("multiemo", "feature_extraction", "configs"):
        shutil.copytree(repo / part, src / part, ignore=shutil.ignore_patterns("__pycache__"))
    for part in ("pyproject.toml", "README.md"):
        shutil.copy2(repo / part, src / part)
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "-w", str(tmp_path / "whl"),
                    "--no-deps", "--no-build-isolation", "-q"], check=True, capture_output=True)
    wheel, = (tmp_path / "whl").glob("multiemo-*.whl")
    inside = set(zipfile.ZipFile(wheel).namelist())
    shipped = {f"multiemo/configs/{p.relative_to(CONFIGS).as_posix()}" for p in CONFIGS.rglob("*.yaml")}
    assert shipped <= inside
    assert "multiemo/config_files.py" in inside and "feature_extraction/text.py" in inside


def test_building_a_config_imports_no_torch():
    """The component names a ModelConfig checks live outside multiemo.model: loading a config
    (a report, a sweep's space check, `configs ls`) does not pay torch's import."""
    code = ("import sys; from multiemo.config import Config, build; "
            "build(Config, {'model': {'context': 'transformer', 'fusion': 'concat'}}); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
