"""The sweep / study YAML: a base training config, a search space or a list of variants.

A **sweep** searches a space; a **study** runs named variants (an ablation grid)::

    # configs/sweeps/meld.yaml                      # configs/studies/paper_tables_meld.yaml
    base: ../meld.yaml                              base: ../meld.yaml
    overrides: {data.root: data/meld}               overrides: {data.root: data/meld}
    objective: weighted_f1                          study:
    trials: 40                                        reference: multiemo
    sampler: {name: tpe, seed: 2023}                  seeds: [2023, 2024, 2025]
    pruner: {name: median, warmup_epochs: 3}          variants:
    space:                                              multiemo: {}
      train.lr: {low: 1.0e-5, high: 1.0e-3, log: true}  without-multiattn: {model.multiattn: false}
      model.num_layers: {low: 1, high: 4}
      train.batch_size: {choices: [32, 64, 100]}
    final: {seeds: [2023, 2024, 2025, 2026, 2027], baseline: true, top_k: 10}

``base`` is a path relative to the YAML file, or a shipped config's name (``base: meld``,
:mod:`multiemo.config_files`). A space entry is a float range (``low``, ``high``,
optional ``log``/``step``), an int range (integers ``low``/``high`` on an int field), or
``choices``. Every path must be a field of the training config and every value must fit it:
the error names the path. ``objective`` is the validation metric (``weighted_f1``, ``macro_f1``
or ``micro_f1``; default ``auto``: the primary metric of the base config's dataset) that trials
maximise and that picks each trial's epoch.

>>> spec = SweepSpec.from_dict({"base": None, "trials": 3,
...     "space": {"train.lr": {"low": 1e-4, "high": 1e-2, "log": True}}}, "s.yaml")
>>> spec.space["train.lr"]
Param(path='train.lr', kind='float', low=0.0001, high=0.01, log=True, step=None, choices=())
>>> SweepSpec.from_dict({"space": {"train.lr": {"low": 0, "high": 1, "log": True}}}, "s.yaml")
Traceback (most recent call last):
...
multiemo.sweep.spec.SweepError: s.yaml: space.train.lr: a log range needs low > 0, got low=0
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from multiemo.config import Config, ConfigError, build, read_yaml, set_dotted, to_dict
from multiemo.config_files import find_config
from multiemo.errors import UserError

__all__ = ["SweepError", "Param", "SweepSpec", "FinalSpec", "StudySpec", "load_spec", "override_value"]


class SweepError(UserError):
    """A sweep file, study folder or storage that cannot be used as asked."""


@dataclass(frozen=True)
class Param:
    path: str
    kind: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple = ()

    def grid(self) -> list:
        """The values of this parameter in a grid search."""
        if self.kind == "categorical":
            return list(self.choices)
        if self.step is None:
            raise SweepError(f"space.{self.path}: a grid needs choices or a step")
        n = int(round((self.high - self.low) / self.step))
        values = [self.low + i * self.step for i in range(n + 1)]
        return [int(v) for v in values] if self.kind == "int" else [round(v, 12) for v in values]


@dataclass(frozen=True)
class FinalSpec:
    seeds: tuple[int, ...] = (2023, 2024, 2025, 2026, 2027)
    baseline: bool = True  # also the base config (no sampled values) with the same seeds
    top_k: int = 10


@dataclass(frozen=True)
class StudySpec:
    variants: dict = field(default_factory=dict)  # name -> {path: value}
    reference: str = ""
    seeds: tuple[int, ...] = (2023, 2024, 2025)


@dataclass(frozen=True)
class SweepSpec:
    source: str
    name: str | None
    base: str | None  # resolved path of the base training config
    overrides: tuple[str, ...]
    objective: Literal["weighted_f1", "macro_f1", "micro_f1"]
    trials: int
    sampler: str
    sampler_seed: int
    pruner: str
    warmup_epochs: int
    startup_trials: int
    space: dict[str, Param]
    final: FinalSpec
    study: StudySpec | None
    keep_checkpoints: bool
    heartbeat_seconds: int

    @property
    def is_study(self) -> bool:
        return self.study is not None

    def base_config(self, extra: list[str] | None = None) -> Config:
        from multiemo.config import load
        cfg = load(Config, self.base, [*self.overrides, *(extra or [])])
        return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, select_metric=self.objective))

    def identity(self, cfg: Config) -> dict:
        """What must not change between two runs of the command on one study folder."""
        plain = to_dict(cfg)
        plain.pop("runtime")
        plain["train"].pop("seed")
        return json.loads(json.dumps({"base_config": plain, "objective": self.objective, "sampler": self.sampler,
                "sampler_seed": self.sampler_seed, "pruner": self.pruner,
                "pruner_settings": [self.warmup_epochs, self.startup_trials],
                "space": {k: dataclasses.asdict(p) for k, p in self.space.items()},
                "study": None if self.study is None else
                {"variants": self.study.variants, "reference": self.study.reference,
                 "seeds": list(self.study.seeds)}}))  # as stored: JSON

    @classmethod
    def from_dict(cls, data: dict, source: str) -> "SweepSpec":
        known = {"name", "base", "overrides", "objective", "trials", "sampler", "pruner", "space",
                 "final", "study", "keep_checkpoints", "heartbeat_seconds"}
        unknown = set(data) - known
        if unknown:
            raise SweepError(f"{source}: unknown key(s) {sorted(unknown)}; known: {sorted(known)}")
        base = data.get("base")
        if base is not None:
            try:  # a file beside this one, else a shipped config's name
                base = str(find_config(str(base), relative_to=Path(source).parent))
            except ConfigError as err:
                raise SweepError(f"{source}: base: {err}") from None
        overrides = _overrides(data.get("overrides"), source)
        objective = data.get("objective", "auto")
        if objective not in ("auto", "weighted_f1", "macro_f1", "micro_f1"):
            raise SweepError(f"{source}: objective must be auto (the dataset's primary metric), "
                             f"weighted_f1, macro_f1 or micro_f1 (a validation metric), got {objective!r}")
        sampler = dict(data.get("sampler") or {})
        pruner = dict(data.get("pruner") or {})
        study = _study(data.get("study"), source)
        space = {path: _param(path, spec, source) for path, spec in (data.get("space") or {}).items()}
        if study is None and not space:
            raise SweepError(f"{source}: a sweep needs a space (or a study: block for variants)")
        if study is not None and space:
            raise SweepError(f"{source}: give either space (a search) or study (variants), not both")
        final = _typed(FinalSpec, data.get("final") or {}, f"{source}: final")
        if not final.seeds:
            raise SweepError(f"{source}: final.seeds is empty: the chosen configuration must be "
                             f"scored on test with at least one seed")
        if len(set(final.seeds)) != len(final.seeds):
            raise SweepError(f"{source}: final.seeds repeats a seed: {list(final.seeds)}")
        spec = cls(source=source, name=data.get("name"), base=base, overrides=overrides,
                   objective=objective,
                   trials=_int(data.get("trials", 20), "trials", source),
                   sampler=sampler.pop("name", "grid" if study else "tpe"),
                   sampler_seed=_int(sampler.pop("seed", 2023), "sampler.seed", source),
                   pruner=pruner.pop("name", "none" if study else "median"),
                   warmup_epochs=_int(pruner.pop("warmup_epochs", 3), "pruner.warmup_epochs", source),
                   startup_trials=_int(pruner.pop("startup_trials", 5), "pruner.startup_trials", source),
                   space=space, final=final, study=study,
                   keep_checkpoints=bool(data.get("keep_checkpoints", False)),
                   heartbeat_seconds=_int(data.get("heartbeat_seconds", 30), "heartbeat_seconds", source))
        if sampler or pruner:
            raise SweepError(f"{source}: unknown sampler/pruner option(s) {sorted({**sampler, **pruner})}")
        if spec.sampler not in ("tpe", "random", "grid"):
            raise SweepError(f"{source}: sampler.name must be tpe, random or grid, got {spec.sampler!r}")
        if spec.pruner not in ("median", "hyperband", "none"):
            raise SweepError(f"{source}: pruner.name must be median, hyperband or none, got {spec.pruner!r}")
        if spec.objective == "auto":  # the primary metric of the base config's dataset
            from multiemo.data.datasets import primary_metric
            spec = dataclasses.replace(spec, objective=primary_metric(spec.base_config().dataset))
        spec.check_paths()
        return spec

    def check_paths(self) -> None:
        """Every space path and variant value must fit the training config."""
        cfg = to_dict(self.base_config())
        for param in self.space.values():
            values = list(param.choices) if param.kind == "categorical" else [param.low, param.high]
            for value in values:
                self._try(cfg, param.path, value, f"space.{param.path}")
        for name, changes in (self.study.variants.items() if self.study else ()):
            for path, value in changes.items():
                self._try(cfg, path, value, f"study.variants.{name}.{path}")

    def _try(self, cfg: dict, path: str, value: Any, where: str) -> None:
        tree = set_dotted({}, path, list(value) if isinstance(value, tuple) else value)
        try:
            build(Config, _merge(cfg, tree), source=self.source)
        except ConfigError as err:
            raise SweepError(f"{self.source}: {where}: {str(err).replace(f' (from {self.source})', '')}") from None


def load_spec(path: str | Path) -> SweepSpec:
    return SweepSpec.from_dict(read_yaml(path, "sweep file"), str(path))


# -- helpers ------------------------------------------------------------------------------------

def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _int(value: Any, key: str, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 and key != "sampler.seed":
        raise SweepError(f"{source}: {key} must be a positive integer, got {value!r}")
    return value


def _overrides(value: Any, source: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, dict):
        return tuple(f"{k}={override_value(v)}" for k, v in value.items())
    if isinstance(value, list) and all(isinstance(v, str) and "=" in v for v in value):
        return tuple(value)
    raise SweepError(f"{source}: overrides must be a mapping of config paths to values, got {value!r}")


def override_value(value: Any) -> str:
    """``value`` as the right side of a ``key=value`` override (YAML flow style).

    >>> override_value([1, "a"]), override_value(0.5), override_value("x y")
    ('[1, a]', '0.5', 'x y')
    """
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def _param(path: str, spec: Any, source: str) -> Param:
    where = f"{source}: space.{path}"
    if not isinstance(spec, dict):
        raise SweepError(f"{where}: expected a mapping (low/high[/log/step] or choices), got {spec!r}")
    unknown = set(spec) - {"low", "high", "log", "step", "choices", "type"}
    if unknown:
        raise SweepError(f"{where}: unknown option(s) {sorted(unknown)}")
    if "choices" in spec:
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise SweepError(f"{where}: choices must be a non-empty list")
        if any(isinstance(c, (dict, list)) for c in choices):
            raise SweepError(f"{where}: choices must be plain values (numbers, strings, booleans)")
        return Param(path, "categorical", choices=tuple(choices))
    if "low" not in spec or "high" not in spec:
        raise SweepError(f"{where}: a range needs low and high (or give choices)")
    low, high = spec["low"], spec["high"]
    for name, v in (("low", low), ("high", high)):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise SweepError(f"{where}: {name} must be a number, got {v!r}")
    if low > high:
        raise SweepError(f"{where}: low={low} is greater than high={high}")
    log = bool(spec.get("log", False))
    if log and low <= 0:
        raise SweepError(f"{where}: a log range needs low > 0, got low={low}")
    kind = spec.get("type") or ("int" if isinstance(low, int) and isinstance(high, int) else "float")
    if kind not in ("int", "float"):
        raise SweepError(f"{where}: type must be int or float, got {kind!r}")
    step = spec.get("step")
    if step is not None and log:
        raise SweepError(f"{where}: step and log cannot be combined")
    return Param(path, kind, int(low) if kind == "int" else float(low),
                 int(high) if kind == "int" else float(high), log, step)


def _study(value: Any, source: str) -> StudySpec | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise SweepError(f"{source}: study must be a mapping (variants, reference, seeds)")
    variants = value.get("variants")
    if not isinstance(variants, dict) or not variants:
        raise SweepError(f"{source}: study.variants must map variant names to override sets")
    for name, changes in variants.items():
        if changes is not None and not isinstance(changes, dict):
            raise SweepError(f"{source}: study.variants.{name} must be a mapping of config paths to values")
    variants = {str(k): dict(v or {}) for k, v in variants.items()}
    reference = str(value.get("reference", next(iter(variants))))
    if reference not in variants:
        raise SweepError(f"{source}: study.reference {reference!r} is not one of the variants {list(variants)}")
    seeds = value.get("seeds", [2023, 2024, 2025])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise SweepError(f"{source}: study.seeds must be a non-empty list of integers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise SweepError(f"{source}: study.seeds repeats a seed: {seeds}")
    unknown = set(value) - {"variants", "reference", "seeds"}
    if unknown:
        raise SweepError(f"{source}: unknown study option(s) {sorted(unknown)}")
    return StudySpec(variants, reference, tuple(seeds))


def _typed(cls: type, data: dict, where: str):
    try:
        return build(cls, data, source=where)
    except ConfigError as err:
        raise SweepError(str(err)) from None


_ = typing  # (dataclass annotations are strings under `from __future__ import annotations`)
