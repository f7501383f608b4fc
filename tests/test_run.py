"""The run record: one schema (run.py), versioned, the only writer; records of earlier versions read."""

import dataclasses
import json
import re
import types
import typing
from pathlib import Path

import pytest

from multiemo.run import (RECORD_VERSION, Resume, RunDir, RunError, RunRecord, ScoredFrom, SeedRuns,
                          Stopped)

PACKAGES = [Path(__file__).resolve().parent.parent / name for name in ("multiemo", "feature_extraction")]

# a run.json written before the record had a version (copied from a real run: a finished
# MELD text run, resumed once with more epochs)
OLD_RECORD = {
    "dataset": "meld",
    "labels": ["neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger"],
    "seed": 2024, "device": "cpu", "amp": False, "num_parameters": 3518727, "modalities": ["text"],
    "overrides": ["dataset=meld", "data.root=/work/data/presets_convergence/emorynlp",
                  "data.validation=dev", "model.num_classes=7", "train.epochs=200", "train.patience=10"],
    "num_dialogues": {"train": 659, "valid": 114, "test": 280},
    "num_utterances": {"train": 6288, "valid": 1109, "test": 2610},
    "train_class_counts": [3008, 764, 170, 407, 1080, 167, 692],
    "status": "finished", "best_epoch": 31, "select_metric": "weighted_f1",
    "valid_weighted_f1": 0.5301870517254541,
    "stopped": {"reason": "patience", "epoch": 71, "best_epoch": 31, "patience": 40, "min_epochs": 0,
                "max_epochs": 800},
    "resumes": [{"at": "2026-12-04T18:33:53", "overrides": ["train.epochs=800", "train.patience=40"]}],
    "scored_from": {"checkpoint": "best", "epoch": 31, "seed": 2024},
    "num_utterances_test": 2610,
}
# a sweep trial's record of the same time: validated, never scored on test
OLD_TRIAL = {"dataset": "meld", "labels": ["neutral", "joy"], "seed": 2023, "status": "validated",
             "best_epoch": 12, "trial": 0, "study": "meld_text_sweep", "select_metric": "weighted_f1",
             "valid_weighted_f1": 0.588476841916469,
             "stopped": {"reason": "max_epochs", "epoch": 15, "best_epoch": 12, "patience": 0,
                         "min_epochs": 0, "max_epochs": 15}}


def written(run: RunDir) -> dict:
    return json.loads(run.record_path.read_text())


def test_a_record_of_an_earlier_version_reads_typed_and_is_rewritten_with_the_version(tmp_path):
    run = RunDir(tmp_path)
    run.record_path.write_text(json.dumps(OLD_RECORD, indent=1))
    record = run.record()
    assert record.version == 1  # as read: the file has no version
    assert record.status == "finished" and record.best_epoch == 31 and record.amp is False
    assert record.valid_score == pytest.approx(0.5301870517254541)  # from valid_<select_metric>
    assert record.stopped == Stopped("patience", 71, 31, 40, 0, 800)
    assert record.resumes == (Resume("2026-12-04T18:33:53", ("train.epochs=800", "train.patience=40")),)
    assert record.scored_from == ScoredFrom("best", 31, 2024)
    assert record.labels[0] == "neutral" and record.num_utterances["test"] == 2610
    assert record.extra == {}  # every key of the old format is a field
    # a change writes the current version and keeps every other key as it was
    run.update(status="finished")
    data = written(run)
    assert data.pop("version") == RECORD_VERSION == 2
    assert data == OLD_RECORD
    # readers see the same through the record: the report and the trial's score
    trial = RunDir(tmp_path / "trial")
    trial.path.mkdir()
    trial.record_path.write_text(json.dumps(OLD_TRIAL))
    assert trial.record().trial == 0 and trial.record().valid_score == pytest.approx(0.588476841916469)


def test_the_record_round_trips_and_the_file_holds_the_version(tmp_path):
    run = RunDir(tmp_path)
    record = run.start(dataset="iemocap", labels=["happy", "sad"], seed=7, status="running",
                       num_dialogues={"train": 3}, select_metric="micro_f1", best_epoch=0)
    assert written(run)["version"] == RECORD_VERSION
    record = run.update(valid_score=0.5, stopped=Stopped("max_epochs", 2, 1, 0, 0, 2),
                        resumes=(Resume("2026-01-01T00:00:00", ("train.epochs=2",)),))
    assert written(run)["valid_micro_f1"] == 0.5  # the key of earlier versions
    assert run.record() == record == RunRecord.from_json(written(run))
    assert RunRecord.from_json(record.to_json()).to_json() == record.to_json()
    assert "error" not in written(run)  # a field not set is not in the file


def sample(hint):
    """A value of type ``hint`` (for any field the schema may grow)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return sample(next(a for a in args if a is not type(None)))
    if origin is typing.Literal:
        return args[-1]
    if origin is tuple:
        return (sample(args[0]),)
    if origin is dict:
        return {"k": sample(args[1])}
    if dataclasses.is_dataclass(hint):
        hints = typing.get_type_hints(hint)
        return hint(**{f.name: sample(hints[f.name]) for f in dataclasses.fields(hint)})
    return {str: "x", int: 3, float: 0.25, bool: True}[hint]


def test_every_field_is_written_and_read_back_with_no_code_of_its_own(tmp_path):
    """A new field of RunRecord needs nothing else in run.py: update, the file and record() carry it."""
    run = RunDir(tmp_path)
    run.start(select_metric="weighted_f1")
    hints = typing.get_type_hints(RunRecord)
    for field in dataclasses.fields(RunRecord):
        if field.name in ("version", "extra"):
            continue
        value = sample(hints[field.name])
        run.update(**{field.name: value})
        assert getattr(run.record(), field.name) == value, field.name


@pytest.mark.parametrize("changes,message", [
    ({"best_epoc": 3}, "no field 'best_epoc'"),
    ({"version": 9}, "no field 'version'"),
    ({"status": "done"}, "'status': expected one of"),
    ({"best_epoch": "3"}, "'best_epoch': expected int, got '3'"),
    ({"best_epoch": True}, "'best_epoch': expected int"),
    ({"labels": [1, 2]}, "'labels[0]': expected str"),
    ({"num_utterances": {"test": 1.5}}, "'num_utterances.test': expected int"),
    ({"stopped": {"reason": "patience", "epoch": 3}}, "'stopped'"),
    ({"stopped": {"reason": "bored", "epoch": 3, "best_epoch": 1, "patience": 0, "min_epochs": 0,
                  "max_epochs": 3}}, "'stopped.reason': expected one of"),
])
def test_an_unknown_field_or_a_wrong_type_is_refused_and_nothing_is_written(tmp_path, changes, message):
    run = RunDir(tmp_path)
    run.start(status="running", best_epoch=0)
    before = run.record_path.read_text()
    with pytest.raises(TypeError, match=re.escape(message)):
        run.update(**changes)
    assert run.record_path.read_text() == before
    with pytest.raises(TypeError, match="'epoch': expected int"):  # the parts are typed too
        ScoredFrom("best", "3", 1)


@pytest.mark.parametrize("content,message", [
    ("{not json", "not valid JSON"),
    ('{"version": 3, "status": "running"}', "record version 3"),
    ('{"status": "done"}', "field 'status': expected one of"),
    ('{"best_epoch": "7"}', "field 'best_epoch': expected int"),
    ('["a"]', "expected a JSON object"),
])
def test_a_damaged_record_is_one_error_naming_the_file(tmp_path, content, message):
    run = RunDir(tmp_path)
    run.record_path.write_text(content)
    with pytest.raises(RunError, match=re.escape(message)) as err:
        run.record()
    assert str(run.record_path) in str(err.value)


def test_keys_written_by_hand_are_kept_and_a_missing_record_is_empty(tmp_path):
    run = RunDir(tmp_path)
    assert run.record() == RunRecord() and not run.has_record()
    run.record_path.write_text(json.dumps({"status": "finished", "note": "the good one"}))
    assert run.record().extra == {"note": "the good one"}
    run.update(best_epoch=2)
    assert written(run)["note"] == "the good one"
    with pytest.raises(TypeError, match="no field 'note'"):
        run.update(note="changed")


def test_seed_runs_read_the_old_seeds_json_and_refuse_a_damaged_one(tmp_path):
    runs = SeedRuns(tmp_path)
    runs.record_path.write_text(json.dumps({"seeds": [2023, 2024]}))  # as earlier versions wrote
    assert runs.seeds() == (2023, 2024) and runs.run(2024).path == tmp_path / "seed-2024"
    runs.write([1, 2])
    assert json.loads(runs.record_path.read_text()) == {"version": 1, "seeds": [1, 2]}
    for bad in ('{"seeds": ["a"]}', '{"seeds": []}', "nope", '{"version": 5, "seeds": [1]}'):
        runs.record_path.write_text(bad)
        with pytest.raises(RunError, match="seeds.json"):
            runs.seeds()


def test_run_py_is_the_only_code_that_names_run_json_or_seeds_json():
    """Everything else reaches the record through RunDir/SeedRuns (docstrings and messages may
    name the file; code that builds its path may not)."""
    path_of = re.compile(r"""/\s*["'](run|seeds)\.json["']|["'](run|seeds)\.json["']\s*\)""")
    offenders = [f"{p}:{n}" for package in PACKAGES for p in package.rglob("*.py") if p.name != "run.py"
                 for n, line in enumerate(p.read_text().splitlines(), 1) if path_of.search(line)]
    assert offenders == []
