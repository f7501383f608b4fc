"""The official-pickle importer on small fake pickles in the released layout (docs/method.md §6.1)."""

from __future__ import annotations

import dataclasses
import pickle
import pickletools
import struct
from pathlib import Path

import numpy as np
import pytest

from multiemo.cli import main as cli_main
from multiemo.data.corpus import IEMOCAP_LABELS, MELD_LABELS, Corpus
from multiemo.data.official import OfficialImportError, UntrustedPickleWarning, import_official
from multiemo.data.store import FeatureStore


def main(argv: list[str]) -> int:
    """`multiemo import-official ...` as a user types it."""
    return cli_main(["import-official", *argv])


pytestmark = pytest.mark.filterwarnings("ignore::multiemo.data.official.UntrustedPickleWarning")

DIMS = {"text": 5, "audio": 3, "visual": 4}
FILES = {"text": "TextFeatures.pkl", "audio": "AudioFeatures.pkl",
         "visual": "VisualFeatures.pkl"}


class _Py2Pickler(pickle._Pickler):
    """Writes str and bytes as Python 2 ``str`` (BINSTRING opcodes), like IEMOCAP's pickle."""

    dispatch = dict(pickle._Pickler.dispatch)

    def _save_py2_str(self, obj):
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = _save_py2_str
    dispatch[bytes] = _save_py2_str


def _dump(obj, path: Path, py2: bool = False) -> None:
    with path.open("wb") as fh:
        if py2:
            _Py2Pickler(fh, protocol=2).dump(obj)
        else:
            pickle.dump(obj, fh)


def _features(rng, n, dim, style):
    matrix = rng.normal(size=(n, dim)).astype(np.float32)
    if style == "list":
        return [row.copy() for row in matrix], matrix
    if style == "rows":  # list of (1, D) arrays, as some extractors save
        return [row[None, :].copy() for row in matrix], matrix
    return matrix, matrix  # one 2-D array


def _write_meld(src: Path, *, video_ids=True, mutate=None):
    """5 dialogues: 0..2 train (incl. dev), 3..4 test; 9-dim one-hot speakers."""
    rng = np.random.default_rng(0)
    src.mkdir(parents=True, exist_ok=True)
    lengths = {0: 3, 1: 2, 2: 4, 3: 1, 4: 3}
    speaker_idx = {0: [0, 1, 0], 1: [0, 0], 2: [0, 1, 2, 1], 3: [0], 4: [0, 1, 1]}
    ids, speakers, labels = {}, {}, {}
    for d, n in lengths.items():
        ids[d] = list(range(n)) if d != 2 else [0, 1, 3, 4]  # dia2 lacks utterance 2
        speakers[d] = [np.eye(9, dtype=np.float32)[k].tolist() for k in speaker_idx[d]]
        labels[d] = [int(x) for x in rng.integers(0, 7, n)]
    expected = {m: {} for m in DIMS}
    tables = {m: {} for m in DIMS}
    for m, style in zip(DIMS, ("list", "matrix", "rows")):
        for d, n in lengths.items():
            tables[m][d], expected[m][d] = _features(rng, n, DIMS[m], style)
    items = [ids if video_ids else None, speakers, labels, None, None, None, None,
             [2, 0, 1], [4, 3], None]
    if mutate:
        mutate(items, tables)
    _dump(tuple(items), src / "Speakers.pkl")
    for m in DIMS:
        _dump(tables[m], src / FILES[m])
    return {"labels": labels, "speaker_idx": speaker_idx, "features": expected}


IEMOCAP_DIALOGUES = {"Ses01F_impro01": "MFMM", "Ses01M_script02_1": "FM",
                     "Ses05F_impro03": "MMFFM"}


def _write_iemocap(src: Path, *, video_ids=True, mutate=None, py2=True):
    rng = np.random.default_rng(1)
    src.mkdir(parents=True, exist_ok=True)
    ids, speakers, labels = {}, {}, {}
    for name, turns in IEMOCAP_DIALOGUES.items():
        counts = {"M": 0, "F": 0}
        ids[name] = []
        for s in turns:
            ids[name].append(f"{name}_{s}{counts[s]:03d}")
            counts[s] += 1
        speakers[name] = list(turns)
        labels[name] = [int(x) for x in rng.integers(0, 6, len(turns))]
    tables, expected = {m: {} for m in DIMS}, {m: {} for m in DIMS}
    for m in DIMS:
        for name, turns in IEMOCAP_DIALOGUES.items():
            tables[m][name], expected[m][name] = _features(rng, len(turns), DIMS[m], "list")
    items = [ids if video_ids else {}, speakers, labels, {}, {}, {}, {},
             ["Ses01M_script02_1", "Ses01F_impro01"], ["Ses05F_impro03"]]
    if mutate:
        mutate(items, tables)
    _dump(tuple(items), src / "Speakers.pkl", py2=py2)
    for m in DIMS:
        _dump(tables[m], src / FILES[m], py2=py2)
    return {"ids": ids, "labels": labels, "features": expected}


# -- good input ---------------------------------------------------------------------------------

def test_meld_import(tmp_path):
    truth = _write_meld(tmp_path / "src")
    with pytest.warns(UntrustedPickleWarning, match="trusted source"):
        corpus = import_official("meld", tmp_path / "src", tmp_path / "out")
    assert Corpus.load(tmp_path / "out" / "corpus.json") == corpus
    assert corpus.name == "meld" and corpus.labels == MELD_LABELS and corpus.speaker_vocab is None
    assert [(d.id, d.split) for d in corpus.dialogues] == [
        ("dia0", "train"), ("dia1", "train"), ("dia2", "train"), ("dia3", "test"),
        ("dia4", "test")]
    dia2 = corpus.dialogues[2]
    assert [u.id for u in dia2.utterances] == ["dia2_utt0", "dia2_utt1", "dia2_utt3",
                                               "dia2_utt4"]
    assert [u.speaker for u in dia2.utterances] == ["speaker0", "speaker1", "speaker2",
                                                    "speaker1"]
    for k, d in enumerate(corpus.dialogues):
        assert [u.label for u in d.utterances] == truth["labels"][k]
        assert d.speaker_indices(None) == truth["speaker_idx"][k]
    assert corpus.info["dialogues_with_onehots_not_in_first_appearance_order"] == 0
    ids = [u.id for u in corpus.utterances()]
    for m, dim in DIMS.items():
        store = FeatureStore(tmp_path / "out" / "features" / f"{m}.safetensors")
        assert store.ids == ids and store.dim == dim
        assert store.info["extractor"] == f"official-{m}"
        assert store.info["source"].endswith(FILES[m])
        vectors, present = store.get(ids)
        assert present.all()
        np.testing.assert_array_equal(vectors, np.concatenate(
            [truth["features"][m][k] for k in range(5)]))


def test_meld_without_utterance_ids_uses_positions(tmp_path):
    _write_meld(tmp_path / "src", video_ids=False)
    corpus = import_official("meld", tmp_path / "src", tmp_path / "out")
    assert [u.id for u in corpus.dialogues[2].utterances] == [f"dia2_utt{i}" for i in range(4)]


def test_iemocap_python2_pickle(tmp_path):
    truth = _write_iemocap(tmp_path / "src")
    ops = {op.name for op, _, _ in pickletools.genops((tmp_path / "src" / "Speakers.pkl")
                                                      .read_bytes())}
    assert "SHORT_BINSTRING" in ops and "BINUNICODE" not in ops  # really a py2-style pickle
    with pytest.raises(UnicodeDecodeError):  # why the importer reads with latin-1
        with (tmp_path / "src" / "TextFeatures.pkl").open("rb") as fh:
            pickle.load(fh)
    corpus = import_official("iemocap", tmp_path / "src", tmp_path / "out")
    assert corpus.labels == IEMOCAP_LABELS and corpus.speaker_vocab == ("M", "F")
    assert [(d.id, d.split) for d in corpus.dialogues] == [
        ("Ses01F_impro01", "train"), ("Ses01M_script02_1", "train"), ("Ses05F_impro03", "test")]
    first = corpus.dialogues[0]
    assert [u.id for u in first.utterances] == ["Ses01F_impro01_M000", "Ses01F_impro01_F000",
                                                "Ses01F_impro01_M001", "Ses01F_impro01_M002"]
    assert first.speaker_indices(corpus.speaker_vocab) == [0, 1, 0, 0]
    assert [u.label for u in first.utterances] == truth["labels"]["Ses01F_impro01"]
    store = FeatureStore(tmp_path / "out" / "features" / "audio.safetensors")
    vectors, _ = store.get(truth["ids"]["Ses05F_impro03"])
    np.testing.assert_allclose(vectors, truth["features"]["audio"]["Ses05F_impro03"])


def test_iemocap_without_utterance_ids(tmp_path):
    _write_iemocap(tmp_path / "src", video_ids=False, py2=False)
    corpus = import_official("iemocap", tmp_path / "src", tmp_path / "out")
    assert [u.id for u in corpus.dialogues[1].utterances] == ["Ses01M_script02_1_0",
                                                              "Ses01M_script02_1_1"]


def test_cli(tmp_path, capsys):
    _write_meld(tmp_path / "src")
    out = tmp_path / "out"
    assert main(["--dataset", "meld", "--src", str(tmp_path / "src"), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "trusted source" in captured.err
    assert "train: 3 dialogues, 9 utterances" in captured.out
    assert "test: 2 dialogues, 4 utterances" in captured.out
    assert (out / "corpus.json").is_file() and (out / "features" / "visual.safetensors").is_file()
    assert main(["--dataset", "meld", "--src", str(tmp_path / "nowhere"), "--out",
                 str(tmp_path / "o2")]) == 2
    assert "Speakers.pkl does not exist" in capsys.readouterr().err
    # an output folder that cannot be written (/proc refuses even root) is one line
    assert main(["--dataset", "meld", "--src", str(tmp_path / "src"), "--out", "/proc/multiemo"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "".join(err) and "/proc/multiemo" in err[-1] and "cannot be written" in err[-1]
    for run in (lambda: main(["--help"]), lambda: cli_main(["import-official", "--help"])):
        assert run() == 0
        assert "--dataset NAME" in capsys.readouterr().out
    assert main(["--dataset", "mosei", "--src", str(tmp_path / "src"), "--out", str(tmp_path / "o3")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "unknown dataset 'mosei'" in err[-1] and "meld, iemocap" in err[-1]


def test_the_layout_comes_from_the_table_of_datasets(tmp_path, monkeypatch):
    """A dataset added to multiemo.data.datasets with an official layout imports with no change
    to the importer: it asks the table, never the name."""
    from multiemo.data import datasets
    iemocap = datasets.DATASETS["iemocap"]
    layout = datasets.OfficialLayout(items=9, speakers="names", dialogue_prefix="conv",
                                     utterance_sep="-u", speaker_vocab=("M", "F"))
    monkeypatch.setitem(datasets.DATASETS, "twin", dataclasses.replace(iemocap, name="twin",
                                                                        official=layout))
    _write_iemocap(tmp_path / "src", video_ids=False)  # utterance ids: dialogue, sep, position
    with pytest.warns(UntrustedPickleWarning):
        corpus = import_official("twin", tmp_path / "src", tmp_path / "out")
    assert corpus.name == "twin" and corpus.speaker_vocab == ("M", "F")
    first = next(d for d in corpus.dialogues if d.id == "convSes01F_impro01")
    assert [u.id for u in first.utterances][:2] == ["convSes01F_impro01-u0", "convSes01F_impro01-u1"]


# -- bad input ----------------------------------------------------------------------------------

def _set(table_index, key, value):
    def mutate(items, tables):
        if isinstance(table_index, str):
            tables[table_index][key] = value(tables[table_index][key])
        else:
            items[table_index][key] = value(items[table_index][key])
    return mutate


@pytest.mark.parametrize("mutate, match", [
    (_set("audio", 1, lambda v: v[:1]),
     r"AudioFeatures.pkl: dialogue 1 has 1 feature vectors but 2 labelled utterances"),
    (_set(1, 2, lambda v: v[:3]),
     r"Speakers.pkl: dialogue 2 has 3 speakers \(item 1\) but 4 labels \(item 2\)"),
    (_set(2, 4, lambda v: v[:2] + [7]),
     r"Speakers.pkl: item 2, dialogue 4, utterance dia4_utt2: label 7 is outside the 7 classes"),
    (_set(2, 0, lambda v: [-1] + v[1:]), r"dialogue 0, utterance dia0_utt0: label -1 is outside"),
    (_set("text", 2, lambda v: [v[0], v[1] * np.nan, v[2], v[3] * np.inf]),
     r"TextFeatures.pkl: NaN or inf in the features of 2 utterance\(s\): "
     r"\['dia2_utt1', 'dia2_utt4'\]"),
    (_set(1, 3, lambda v: [[0.0] * 9]),
     r"Speakers.pkl: item 1, dialogue 3: the speaker vector of utterance\(s\) \[0\] is not one-hot"),
    (_set(1, 1, lambda v: [[1.0, 1.0] + [0.0] * 7, v[1]]), r"dialogue 1: .* is not one-hot"),
    (_set(1, 4, lambda v: [x[:3] for x in v]),
     r"item 1, dialogue 4: speaker vectors hold 3 speakers, the others 9"),
    (_set("visual", 3, lambda v: [np.zeros(7, np.float32)]),
     r"VisualFeatures.pkl: feature vectors of different sizes \[4, 7\]"),
    (lambda items, tables: tables["text"].pop(4), r"TextFeatures.pkl: no features for dialogue 4"),
    (lambda items, tables: items.__setitem__(8, [4, 3, 0]),
     r"dialogue\(s\) \[0\] are in both the train ids \(item 7\) and the test ids"),
    (lambda items, tables: items.__setitem__(7, [0, 1, 2, 9]),
     r"dialogue 9 of the train ids has no entry in item 1"),
    (lambda items, tables: items.__setitem__(1, [1, 2]),
     r"item 1 should be a dict dialogue id"),
])
def test_meld_bad_input(tmp_path, mutate, match):
    _write_meld(tmp_path / "src", mutate=mutate)
    with pytest.raises(OfficialImportError, match=match):
        import_official("meld", tmp_path / "src", tmp_path / "out")
    assert not (tmp_path / "out").exists()  # checked before anything is written


def test_iemocap_bad_speaker_and_layout(tmp_path):
    _write_iemocap(tmp_path / "a", mutate=_set(1, "Ses05F_impro03", lambda v: v[:4] + ["X"]))
    with pytest.raises(OfficialImportError, match=r"dialogue 'Ses05F_impro03': speaker\(s\) "
                       r"\['X'\] do not fit the 2-speaker vector \['M', 'F'\]"):
        import_official("iemocap", tmp_path / "a", tmp_path / "out")
    (tmp_path / "b").mkdir()
    _dump(("only", "three", "items"), tmp_path / "b" / "Speakers.pkl")
    with pytest.raises(OfficialImportError, match=r"Speakers.pkl: expected the DialogueRNN-style "
                       r"tuple of 9 items, got tuple of 3 items"):
        import_official("iemocap", tmp_path / "b", tmp_path / "out")
    (tmp_path / "b" / "Speakers.pkl").write_bytes(b"not a pickle")
    with pytest.raises(OfficialImportError, match="Speakers.pkl: not a readable pickle"):
        import_official("iemocap", tmp_path / "b", tmp_path / "out")
    with pytest.raises(OfficialImportError, match="unknown dataset 'mosei'"):
        import_official("mosei", tmp_path / "b", tmp_path / "out")
