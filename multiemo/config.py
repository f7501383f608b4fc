"""Plain YAML mapped onto typed, frozen dataclasses, with ``key=value`` overrides.

Defaults live in the dataclasses only. A YAML file or an override may name only fields that
exist (dotted for nesting), and every value is checked against the field's type; a mistake is
a :class:`ConfigError` that names the key and, for files, the file.

>>> from dataclasses import dataclass, field
>>> @dataclass(frozen=True)
... class Inner:
...     size: int = 2
...     name: str = "a"
>>> @dataclass(frozen=True)
... class Outer:
...     inner: Inner = field(default_factory=Inner)
...     rate: float = 0.1
...     flag: bool = False
>>> cfg = build(Outer, {"inner": {"size": 3}}, ["rate=0.5", "flag=false", "inner.name=b"])
>>> cfg
Outer(inner=Inner(size=3, name='b'), rate=0.5, flag=False)
>>> build(Outer, {}, ["inner.sise=3"])
Traceback (most recent call last):
...
multiemo.config.ConfigError: unknown key 'inner.sise' (from the command line); known keys of 'inner': size, name
>>> build(Outer, {}, ["flag=maybe"])
Traceback (most recent call last):
...
multiemo.config.ConfigError: key 'flag' (from the command line): expected a boolean (true/false), got 'maybe'
"""


import copy
import dataclasses
import math
import os
import types
from dataclasses import dataclass, field
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

from multiemo.errors import UserError

__all__ = ["ConfigError", "build", "load", "read_yaml", "to_dict", "parse_overrides", "set_dotted",
           "get_dotted", "resolve_path", "Config",
           "DataConfig", "ModelConfig", "LossConfig", "TrainConfig", "RuntimeConfig", "MODALITIES",
           "resolve_device", "set_num_threads", "default_threads", "check_open_unit", "plain_data"]

T = TypeVar("T")


class ConfigError(UserError):
    """A configuration key or value that does not fit the dataclass it is meant for."""


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """``["a.b=1", "c=x"]`` → nested dict with YAML-parsed values (``1`` is an int, ``x`` a str)."""
    tree: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"override {item!r} has an empty key")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        if isinstance(value, str):
            value = raw  # keep strings verbatim (YAML would strip quotes and spaces)
        try:
            tree = set_dotted(tree, key, value)
        except ValueError as err:
            raise ConfigError(f"override {item!r} conflicts with another override ({err})") from None
    return tree


def set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """A deep copy of nested ``tree`` with ``a.b.c`` set to ``value`` (missing levels are made).

    >>> set_dotted({"a": {"b": 1}}, "a.c.d", 2)
    {'a': {'b': 1, 'c': {'d': 2}}}
    >>> set_dotted({"a": 1}, "a.b", 2)
    Traceback (most recent call last):
    ...
    ValueError: 'a' holds 1, not a mapping
    """
    out = copy.deepcopy(tree)
    node = out
    parts = dotted.split(".")
    for depth, part in enumerate(parts[:-1]):
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ValueError(f"{'.'.join(parts[:depth + 1])!r} holds {node!r}, not a mapping")
    node[parts[-1]] = value
    return out


def get_dotted(tree: dict[str, Any], dotted: str, default: Any = None) -> Any:
    """The value at ``a.b.c`` of nested ``tree``, or ``default`` where a level is missing.

    >>> get_dotted({"a": {"b": 1}}, "a.b"), get_dotted({"a": 1}, "a.b"), get_dotted({}, "x", 0)
    (1, None, 0)
    """
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def resolve_path(root: str | Path, path: str | Path) -> Path:
    """``path`` as given when absolute, else under ``root``: the one rule for a path a config
    gives relative to a folder (a store or corpus under ``data.root``, a media file under the
    media root, a sweep's ``base:`` beside its file). ``~`` is not expanded: a config's paths
    mean the same on every machine.

    >>> resolve_path("data/meld", "features/text.safetensors").as_posix()
    'data/meld/features/text.safetensors'
    >>> resolve_path("data/meld", "/abs/corpus.json").as_posix()
    '/abs/corpus.json'
    """
    path = Path(path)
    return path if path.is_absolute() else Path(root) / path


def build(cls: type[T], data: dict[str, Any] | None = None, overrides: list[str] | None = None,
          source: str = "the configuration") -> T:
    """Build dataclass ``cls`` from a dict (e.g. parsed YAML) and then ``key=value`` overrides."""
    merged = _coerce(cls, data or {}, "", source)
    if overrides:
        merged = _apply(merged, parse_overrides(overrides), "", "the command line")
    return merged


def read_yaml(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """The mapping a YAML file holds; a missing file, bad YAML or a non-mapping is a ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{what} {path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path} must hold a mapping at the top level")
    return data


def load(cls: type[T], path: str | Path | None, overrides: list[str] | None = None) -> T:
    """Read a YAML file (or nothing) into ``cls``, then apply overrides."""
    if path is None:
        return build(cls, {}, overrides, "the configuration")
    return build(cls, read_yaml(path), overrides, str(path))


def plain_data(x: Any) -> Any:
    """``x`` as YAML and JSON hold it: dataclasses become dicts, tuples lists, recursively."""
    if dataclasses.is_dataclass(x):
        return {f.name: plain_data(getattr(x, f.name)) for f in dataclasses.fields(x)}
    if isinstance(x, (list, tuple)):
        return [plain_data(v) for v in x]
    if isinstance(x, dict):
        return {k: plain_data(v) for k, v in x.items()}
    return x


def to_dict(cfg: Any) -> dict[str, Any]:
    """A plain, YAML-friendly dict of a config dataclass (tuples become lists)."""
    return plain_data(cfg)


SEED_MAX = 2**32 - 1  # torch and numpy take seeds in [0, 2**32 - 1]


def _at_least(block: Any, prefix: str, names: tuple[str, ...], low: int) -> None:
    """Each field of ``names`` is at least ``low`` (a ValueError naming the key otherwise)."""
    for name in names:
        value = getattr(block, name)
        if not value >= low:  # `not >=`: a NaN fails too
            what = "at least 1" if low == 1 else f"at least {low}" if low else "0 or more"
            raise ValueError(f"{prefix}.{name} must be {what}, got {value}")


def check_open_unit(block: Any, prefix: str, names: tuple[str, ...]) -> None:
    """Each field of ``names`` is in (0, 1) (a ValueError naming the key otherwise; ``prefix``
    is the block's key, empty for a top-level field): every ``valid_fraction`` (training, text
    extraction, projections, the validation rule) and ``train.plateau_factor``."""
    for name in names:
        value = getattr(block, name)
        if not 0.0 < value < 1.0:  # `not`: a NaN fails too
            raise ValueError(f"{prefix + '.' if prefix else ''}{name} must be in (0, 1), got {value}")


def _positive(block: Any, prefix: str, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(block, name)
        if not value > 0:
            raise ValueError(f"{prefix}.{name} must be positive, got {value}")


# -- the training configuration (defaults: the official MELD recipe, docs/method.md §4) ------------

MODALITIES = ("text", "audio", "visual")


@dataclass(frozen=True)
class DataConfig:
    """Where the corpus and feature stores are, and how validation is drawn.

    Paths are relative to ``root`` unless absolute. The validation split is
    :class:`multiemo.data.splits.ValidationRule` of ``validation``, ``valid_fraction`` and
    ``valid_seed`` (the same three settings, with the same names, decide what a fine-tuned text
    encoder or a fitted projection learns from): ``"fraction"`` folds any dev split into train
    and holds out ``valid_fraction`` of the training dialogues, drawn with ``valid_seed`` (the
    released recipe: 5%); ``"dev"`` uses the corpus's own dev split; ``"auto"`` is ``dev`` when
    the corpus has one, else ``fraction``.
    """

    root: str = "data/meld"
    corpus: str = "corpus.json"
    text: str = "features/text.safetensors"
    audio: str = "features/audio.safetensors"
    visual: str = "features/visual.safetensors"
    validation: Literal["auto", "dev", "fraction"] = "auto"
    valid_fraction: float = 0.05
    valid_seed: int = 2023
    missing: Literal["error", "absent"] = "error"  # an utterance with no row in a store

    def __post_init__(self) -> None:
        check_open_unit(self, "data", ("valid_fraction",))
        _at_least(self, "data", ("valid_seed",), 0)


@dataclass(frozen=True)
class ModelConfig:
    """Sizes and switches of MultiEMO (docs/method.md §2); defaults are the official MELD model."""

    modalities: tuple[str, ...] = MODALITIES
    text_dim: int = 768
    audio_dim: int = 512
    visual_dim: int = 1000
    model_dim: int = 256
    num_heads: int = 4
    hidden_dim: int = 1024  # MultiAttn feed-forward hidden size
    num_layers: int = 2  # MultiAttn layers per modality
    mlp_hidden: int = 512  # classifier MLP hidden size
    num_classes: int = 7
    num_speakers: int = 9
    bidirectional_context: bool = False  # context both ways (IEMOCAP) or forward only / causal (MELD)
    # context encoder: dialoguernn | transformer | none, one for all modalities or a mapping
    # modality -> name; unset: dialoguernn, for text only with text_context (see README)
    context: str | dict[str, str] | None = None
    text_context: bool = False  # unset context: text through a DialogueRNN too (IEMOCAP) or not (MELD)
    context_layers: int = 1  # layers of a transformer context encoder
    fusion: str | None = None  # multiattn | concat; unset: multiattn (concat with multiattn: false)
    multiattn: bool = True  # older name: false means fusion: concat (the "w/o MultiAttn" ablation)
    classifier: str = "mlp"
    dropout: float = 0.0
    dropout_rec: float = 0.0

    def __post_init__(self) -> None:
        if not self.modalities or len(set(self.modalities)) != len(self.modalities) or \
                not set(self.modalities) <= set(MODALITIES):
            raise ValueError(f"model.modalities must be a non-empty subset of {list(MODALITIES)} "
                             f"without repeats, got {list(self.modalities)}")
        _at_least(self, "model", ("text_dim", "audio_dim", "visual_dim", "model_dim", "num_heads",
                                  "hidden_dim", "num_layers", "mlp_hidden", "num_speakers",
                                  "context_layers"), 1)
        _at_least(self, "model", ("num_classes",), 2)
        for name in ("dropout", "dropout_rec"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"model.{name} must be in [0, 1), got {value}")
        if self.model_dim % self.num_heads:
            raise ValueError(f"model.model_dim={self.model_dim} is not divisible by "
                             f"model.num_heads={self.num_heads}")
        from multiemo import components  # the names live beside their builders (no torch)
        components.resolve_context(self.modalities, self.context, self.text_context)
        components.resolve_fusion(self.fusion, self.multiattn)
        components.check_name("model.classifier", self.classifier, components.CLASSIFIERS)


@dataclass(frozen=True)
class LossConfig:
    """The objective ``ce_weight·CE + swfc_weight·SWFC + hgr_weight·SoftHGR`` (docs/method.md §3)."""

    ce_weight: float = 0.4
    swfc_weight: float = 0.3
    hgr_weight: float = 0.3
    temperature: float = 1.4  # SWFC τ
    gamma: float = 2.0  # SWFC focusing parameter γ
    alpha: float = 1.2  # SWFC sample-weight parameter α
    hgr_variant: Literal["official", "paper"] = "official"
    ce_class_weight_power: float = 0.0  # 0: plain CE; p > 0: class weights ∝ (N/n_c)^p

    def __post_init__(self) -> None:
        _at_least(self, "loss", ("ce_weight", "swfc_weight", "hgr_weight"), 0)
        if not self.ce_weight + self.swfc_weight + self.hgr_weight > 0:
            raise ValueError("loss.ce_weight, loss.swfc_weight and loss.hgr_weight are all 0: "
                             "at least one must be positive")
        _positive(self, "loss", ("temperature",))
        _at_least(self, "loss", ("gamma", "alpha", "ce_class_weight_power"), 0)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 15  # the most epochs; with patience, training may stop sooner
    batch_size: int = 100  # dialogues per batch
    lr: float = 1e-4
    weight_decay: float = 1e-5
    plateau_factor: float = 0.95
    plateau_patience: int = 10
    plateau_threshold: float = 1e-6
    seed: int = 2023
    # the validation metric that picks the epoch; auto: the dataset's primary metric
    # (multiemo.data.datasets: weighted_f1 for MELD, IEMOCAP, EmoryNLP and own corpora, micro_f1
    # without "no emotion" for DailyDialog)
    select_metric: Literal["auto", "weighted_f1", "macro_f1", "micro_f1"] = "auto"
    # early stopping: stop once select_metric has not improved (strictly, as in the epoch
    # selection) for this many consecutive epochs; 0 = never stop early, run all epochs
    patience: int = 0
    min_epochs: int = 0  # a warm-up: never stop early before this many epochs

    def __post_init__(self) -> None:
        _at_least(self, "train", ("epochs", "batch_size"), 1)
        _positive(self, "train", ("lr",))
        _at_least(self, "train", ("patience", "min_epochs", "weight_decay", "plateau_patience",
                                  "plateau_threshold"), 0)
        check_open_unit(self, "train", ("plateau_factor",))
        if not 0 <= self.seed <= SEED_MAX:
            raise ValueError(f"train.seed must be in [0, {SEED_MAX}], got {self.seed}")
        if self.min_epochs > self.epochs:
            raise ValueError(f"train.min_epochs={self.min_epochs} is more than "
                             f"train.epochs={self.epochs} (the most epochs a run trains)")


@dataclass(frozen=True)
class RuntimeConfig:
    """How to run, not what to learn: never changes the result on a given device."""

    device: str = "auto"  # auto (CUDA when present), cpu, cuda, cuda:N
    amp: bool = True  # mixed precision (bf16) on CUDA; CPU always runs fp32
    num_threads: int = 0  # torch CPU threads; 0: default_threads() (the CPUs this process may use)
    wandb: Literal["disabled", "offline", "online"] = "disabled"
    wandb_project: str = "multiemo"

    def __post_init__(self) -> None:
        if self.num_threads < 0:
            raise ValueError(f"runtime.num_threads must be 0 (the default: the CPUs this process "
                             f"may use) or positive, "
                             f"got {self.num_threads}")


@dataclass(frozen=True)
class Config:
    dataset: str = "meld"  # a name of multiemo.data.datasets (its primary metric, paper row) or any name
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)


#: cgroup v2 CPU limit ("quota period" or "max period"); module-level so tests can point it elsewhere
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
#: cgroup v1 CPU quota and period (microseconds; a quota of -1 is no limit)
CGROUP_V1_QUOTA = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
CGROUP_V1_PERIOD = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")
#: environment variables that, set to a positive integer, cap the default
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "SLURM_CPUS_PER_TASK")


def _cgroup_cpus() -> int | None:
    """CPUs the cgroup quota allows (rounded up), or None when there is no quota or no file."""
    try:
        quota, period = CGROUP_CPU_MAX.read_text().split()[:2]
        if quota == "max":
            return None
        q, p = int(quota), int(period)
    except (OSError, ValueError):
        try:
            q = int(CGROUP_V1_QUOTA.read_text().strip())
            p = int(CGROUP_V1_PERIOD.read_text().strip())
        except (OSError, ValueError):
            return None
    if q <= 0 or p <= 0:
        return None
    return max(1, math.ceil(q / p))


def default_threads() -> int:
    """The CPU threads a computation should use by default: the smallest of the CPUs this process
    may run on (its affinity mask, else ``os.cpu_count()``), the cgroup CPU quota (v2
    ``cpu.max``, or v1 ``cpu.cfs_quota_us / cpu.cfs_period_us``, rounded up), and
    ``OMP_NUM_THREADS`` / ``SLURM_CPUS_PER_TASK`` when set to a positive integer; at least 1.

    Torch's own default counts every core of the machine, which oversubscribes a container, a
    ``taskset`` or a batch job's share."""
    try:
        limits = [len(os.sched_getaffinity(0))]
    except (AttributeError, OSError):  # not on Linux
        limits = [os.cpu_count() or 1]
    quota = _cgroup_cpus()
    if quota is not None:
        limits.append(quota)
    for name in THREAD_ENV_VARS:
        raw = os.environ.get(name, "").strip()
        if raw.isdigit() and int(raw) > 0:
            limits.append(int(raw))
    return max(1, min(limits))


def set_num_threads(count: int, key: str = "num_threads") -> None:
    """Torch's CPU threads: ``count`` > 0 is exactly that many, 0 is :func:`default_threads`; a
    negative count is a ConfigError naming ``key``. The one rule for training
    (``runtime.num_threads``), extraction jobs (``num_threads``), ``multiemo predict --threads``
    and :class:`multiemo.recognizer.Recognizer` (``num_threads``)."""
    if count < 0:
        raise ConfigError(f"{key} must be 0 (the default: the CPUs this process may use) or "
                          f"positive, got {count}")
    import torch  # the config itself needs no torch
    torch.set_num_threads(count or default_threads())


def resolve_device(name: str = "auto"):
    """``runtime.device`` as a ``torch.device``: ``auto`` is CUDA when present, else CPU.

    Raises:
        ConfigError: CUDA asked for where there is none.
    """
    import torch  # the config itself needs no torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device={name!r} is not a device: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but CUDA is not available here")
    return device


# --------------------------------------------------------------------------------------------

def _apply(cfg: Any, tree: dict[str, Any], prefix: str, source: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    hints = typing.get_type_hints(type(cfg))
    changes = {}
    for key, value in tree.items():
        dotted = prefix + key
        if key not in fields:
            raise ConfigError(f"unknown key {dotted!r} (from {source}); known keys"
                              f"{' of ' + repr(prefix[:-1]) if prefix else ''}: {', '.join(fields)}")
        current = getattr(cfg, key)
        if dataclasses.is_dataclass(current) and isinstance(value, dict):
            changes[key] = _apply(current, value, dotted + ".", source)
        else:
            changes[key] = _check(hints[key], value, dotted, source)
    try:
        return dataclasses.replace(cfg, **changes)
    except ValueError as err:  # the dataclass's own __post_init__ checks
        raise ConfigError(f"{source}: {err}") from err


def _coerce(cls: type, data: dict[str, Any], prefix: str, source: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"key {prefix[:-1]!r} (from {source}): expected a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        dotted = prefix + str(key)
        if key not in fields:
            raise ConfigError(f"unknown key {dotted!r} (from {source}); known keys"
                              f"{' of ' + repr(prefix[:-1]) if prefix else ''}: {', '.join(fields)}")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _coerce(hint, value if value is not None else {}, dotted + ".", source)
        else:
            kwargs[key] = _check(hint, value, dotted, source)
    try:
        return cls(**kwargs)
    except TypeError as err:  # a field without default that the file does not give
        raise ConfigError(f"{source}: {err}") from err
    except ValueError as err:  # the dataclass's own __post_init__ checks
        raise ConfigError(f"{source}: {err}") from err


def _check(hint: Any, value: Any, key: str, source: str) -> Any:
    origin, args = get_origin(hint), get_args(hint)
    where = f"key {key!r} (from {source})"
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in args:
            if option is type(None):
                continue
            try:
                return _check(option, value, key, source)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[-1] if errors else f"{where}: bad value {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: expected one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        return tuple(_check(inner, v, key, source) for v in value)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{where}: expected a boolean (true/false), got {value!r}")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            if isinstance(value, str):
                try:
                    return float(value)
                except ValueError:
                    pass
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return str(value)
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported field type {hint!r}")
