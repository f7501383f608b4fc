"""EmoryNLP and DailyDialog readers on small files in each official layout, and bad input."""

from __future__ import annotations

import json

import pytest

from multiemo.data.corpus import Corpus, CorpusError
from multiemo.data.dailydialog import DAILYDIALOG_LABELS, read_dailydialog
from multiemo.data.emorynlp import EMORYNLP_LABELS, read_emorynlp

from builders import DD_DEFAULT, emorynlp_release, write_dailydialog, write_emorynlp  # the releases

# -- EmoryNLP ------------------------------------------------------------------------------------


def test_emorynlp_reader(tmp_path):
    corpus = read_emorynlp(write_emorynlp(tmp_path))
    assert corpus.name == "emorynlp" and corpus.labels == EMORYNLP_LABELS
    assert corpus.speaker_vocab is None and corpus.splits == ["train", "dev", "test"]
    assert [d.id for d in corpus.split("train")] == ["s01_e01_c01", "s01_e01_c02", "s01_e02_c01"]
    assert [len(d.utterances) for d in corpus.dialogues] == [3, 2, 1, 2, 1]
    stats = corpus.stats()["splits"]
    assert {s: (v["dialogues"], v["utterances"]) for s, v in stats.items()} == \
        {"train": (3, 6), "dev": (1, 2), "test": (1, 1)}
    c01, c02 = corpus.dialogues[0].utterances, corpus.dialogues[1].utterances
    assert [u.id for u in c01] == ["s01_e01_c01_u001", "s01_e01_c01_u002", "s01_e01_c01_u003"]
    assert [corpus.labels[u.label] for u in c01 + c02] == \
        ["neutral", "joyful", "mad", "scared", "peaceful"]
    assert [u.speaker for u in c01] == ["Monica Geller", "Ross Geller & Rachel Green",
                                        "Joey Tribbiani"]
    assert c02[0].speaker == "unknown"
    assert corpus.dialogues[0].speaker_indices(None) == [0, 1, 2]  # the pair is its own party
    assert c01[0].text == "There's nothing to tell!" and c01[2].text == "C'mon, you're going out"
    assert c02[1].text == ""
    assert corpus.dialogues[3].split == "dev" and corpus.dialogues[3].utterances[0].label == \
        EMORYNLP_LABELS.index("powerful")
    info = corpus.info
    assert info["reader"] == "emorynlp" and info["source"] == str(tmp_path)
    assert info["skipped"] == {} and info["empty_text"] == 1
    assert (info["multi_speaker"], info["unknown_speaker"], info["max_scene_speakers"]) == (1, 1, 3)
    assert Corpus.from_dict(corpus.to_dict()) == corpus


def _scene(release, index=0):
    return release["trn"]["episodes"][0]["scenes"][index]


def _set_emotion(release):
    _scene(release)["utterances"][1]["emotion"] = "Happy"


def _drop_emotion(release):
    del _scene(release)["utterances"][1]["emotion"]


def _drop_utterance_id(release):
    del _scene(release)["utterances"][1]["utterance_id"]


def _speakers_string(release):
    _scene(release)["utterances"][1]["speakers"] = "Ross Geller"


def _duplicate_utterance(release):  # dev repeats a train utterance id
    release["dev"]["episodes"][0]["scenes"][0]["utterances"][1]["utterance_id"] = "s01_e01_c01_u002"


def _empty_scene(release):
    release["trn"]["episodes"][1]["scenes"][0]["utterances"] = []


def _duplicate_scene(release):
    release["tst"]["episodes"][0]["scenes"][0]["scene_id"] = "s01_e02_c01"


@pytest.mark.parametrize("mutate, match, reason, utterances", [
    (_set_emotion, r"emotion-detection-trn.json: scene 's01_e01_c01', utterance "
     r"'s01_e01_c01_u002': unknown emotion 'Happy'", "unknown emotion", 8),
    (_drop_emotion, r"emotion-detection-trn.json: scene 's01_e01_c01', utterance "
     r"'s01_e01_c01_u002': no \['emotion'\]", "missing field", 8),
    (_drop_utterance_id, r"emotion-detection-trn.json: scene 's01_e01_c01', utterance #1: no "
     r"'utterance_id'", "missing field", 8),
    (_speakers_string, r"emotion-detection-trn.json: scene 's01_e01_c01', utterance "
     r"'s01_e01_c01_u002': 'speakers' 'Ross Geller' is not a list", "bad field", 8),
    (_duplicate_utterance, r"emotion-detection-dev.json: scene 's02_e01_c01', utterance "
     r"'s01_e01_c01_u002': duplicate utterance id \(first in emotion-detection-trn.json scene "
     r"'s01_e01_c01'\)", "duplicate id", 8),
    (_empty_scene, r"emotion-detection-trn.json: scene 's01_e02_c01': empty scene",
     "empty scene", 8),
    (_duplicate_scene, r"emotion-detection-tst.json: scene 's01_e02_c01': duplicate scene id",
     "duplicate scene id", None),
])
def test_emorynlp_bad_records_are_named_or_skipped(tmp_path, mutate, match, reason, utterances):
    release = emorynlp_release()
    mutate(release)
    write_emorynlp(tmp_path, release)
    with pytest.raises(CorpusError, match=match):
        read_emorynlp(tmp_path)
    if utterances is None:  # skipping the test's only scene leaves the split empty: an error
        with pytest.raises(CorpusError, match=r"emotion-detection-tst.json: no scenes left after "
                                              r"skipping bad ones \(the test split would be empty"):
            read_emorynlp(tmp_path, skip_bad_rows=True)
        return
    corpus = read_emorynlp(tmp_path, skip_bad_rows=True)
    assert corpus.info["skipped"] == {reason: 1}
    assert sum(1 for _ in corpus.utterances()) == utterances  # of 9


def test_emorynlp_scene_with_every_utterance_skipped(tmp_path):
    release = emorynlp_release()
    release["trn"]["episodes"][1]["scenes"][0]["utterances"][0]["emotion"] = "Bored"
    corpus = read_emorynlp(write_emorynlp(tmp_path, release), skip_bad_rows=True)
    assert corpus.info["skipped"] == {"unknown emotion": 1, "no utterances left": 1}
    assert "s01_e02_c01" not in [d.id for d in corpus.dialogues]


def test_emorynlp_file_faults(tmp_path):
    write_emorynlp(tmp_path)
    trn = tmp_path / "emotion-detection-trn.json"
    good = trn.read_text(encoding="utf-8")
    (tmp_path / "emotion-detection-dev.json").unlink()
    with pytest.raises(CorpusError, match=r"emotion-detection-dev.json does not exist"):
        read_emorynlp(tmp_path)
    write_emorynlp(tmp_path)

    trn.write_text('{"episodes": [\n  {"episode_id": "s01_e01",\n   "scenes": [,]}]}',
                   encoding="utf-8")
    with pytest.raises(CorpusError, match=r"emotion-detection-trn.json:3:15: malformed JSON"):
        read_emorynlp(tmp_path, skip_bad_rows=True)  # never skippable

    broken = [
        ({"scenes": []}, r"trn.json: no 'episodes' list at the top level"),
        ({"episodes": [{"episode_id": "s01_e01"}]}, r"trn.json: episode 's01_e01' has no 'scenes'"),
        ({"episodes": [{"episode_id": "s01_e01", "scenes": [{"utterances": []}]}]},
         r"trn.json: episode 's01_e01', scene #0 has no 'scene_id'"),
        ({"episodes": [{"episode_id": "s01_e01", "scenes": [{"scene_id": "s01_e01_c01"}]}]},
         r"trn.json: scene 's01_e01_c01' has no 'utterances' list"),
        ({"episodes": []}, r"trn.json: no scenes \(the train split would be empty\)"),
    ]
    for data, match in broken:
        trn.write_text(json.dumps(data), encoding="utf-8")
        with pytest.raises(CorpusError, match=match):
            read_emorynlp(tmp_path)
    trn.write_text(good, encoding="utf-8")
    assert len(read_emorynlp(tmp_path).dialogues) == 5


# -- DailyDialog ---------------------------------------------------------------------------------

def test_dailydialog_reader(tmp_path):
    corpus = read_dailydialog(write_dailydialog(tmp_path))
    assert corpus.name == "dailydialog" and corpus.labels == DAILYDIALOG_LABELS
    assert corpus.speaker_vocab == ("A", "B") and corpus.splits == ["train", "dev", "test"]
    assert [d.id for d in corpus.dialogues] == ["train_dia0", "train_dia1", "train_dia2",
                                                "dev_dia0", "test_dia0", "test_dia1"]
    stats = corpus.stats()["splits"]
    assert {s: (v["dialogues"], v["utterances"]) for s, v in stats.items()} == \
        {"train": (3, 6), "dev": (1, 2), "test": (2, 5)}
    first = corpus.dialogues[0].utterances
    assert [u.id for u in first] == ["train_dia0_utt0", "train_dia0_utt1", "train_dia0_utt2"]
    assert [u.speaker for u in first] == ["A", "B", "A"]
    assert corpus.dialogues[4].speaker_indices(corpus.speaker_vocab) == [0, 1, 0, 1]
    assert first[0].text == "Say , Jim , how about going for a few beers after dinner ?"
    assert corpus.dialogues[1].utterances[1].text == "Of course I can . It's a piece of cake !"
    names = [[corpus.labels[u.label] for u in d.utterances] for d in corpus.dialogues]
    assert names == [["no_emotion", "no_emotion", "anger"], ["no_emotion", "happiness"],
                     ["surprise"], ["no_emotion", "no_emotion"],
                     ["no_emotion", "surprise", "no_emotion", "disgust"], ["sadness"]]
    assert corpus.info["reader"] == "dailydialog" and corpus.info["skipped"] == {}
    assert corpus.info["empty_text"] == 0
    assert Corpus.from_dict(corpus.to_dict()) == corpus


def _dd_with(folder: str, texts: list[str], emotions: list[str]) -> dict:
    splits = dict(DD_DEFAULT)
    splits[folder] = (texts, emotions)
    return splits


@pytest.mark.parametrize("texts, emotions, match, reason", [
    (["Hi . __eou__ Hello . __eou__", "One . __eou__ Two . __eou__ Three . __eou__",
      "Ok . __eou__"],
     ["0 0", "0 4", "0"], r"dialogues_train.txt:2: 3 utterances \(__eou__ marks\) but "
     r".*dialogues_emotion_train.txt:2 has 2 emotion codes", "count mismatch"),
    (["Hi . __eou__", "Yes . __eou__", "Ok . __eou__"], ["0", "7", "0"],
     r"dialogues_emotion_train.txt:2: emotion code '7' is not an integer in 0..6",
     "bad emotion code"),
    (["Hi . __eou__", "Yes . __eou__", "Ok . __eou__"], ["0", "x", "0"],
     r"dialogues_emotion_train.txt:2: emotion code 'x'", "bad emotion code"),
    (["Hi . __eou__", "  ", "Ok . __eou__"], ["0", "", "0"],
     r"dialogues_train.txt:2: empty dialogue", "empty dialogue"),
    (["Hi . __eou__", "Yes . __eou__ No", "Ok . __eou__"], ["0", "0", "0"],
     r"dialogues_train.txt:2: text after the last __eou__: 'No'", "missing __eou__"),
])
def test_dailydialog_bad_lines_are_named_or_skipped(tmp_path, texts, emotions, match, reason):
    write_dailydialog(tmp_path, _dd_with("train", texts, emotions))
    with pytest.raises(CorpusError, match=match):
        read_dailydialog(tmp_path)
    corpus = read_dailydialog(tmp_path, skip_bad_rows=True)
    assert corpus.info["skipped"] == {reason: 1}
    # the ids keep the line index
    assert [d.id for d in corpus.split("train")] == ["train_dia0", "train_dia2"]


def test_dailydialog_file_faults(tmp_path):
    write_dailydialog(tmp_path, _dd_with("validation", ["A . __eou__", "B . __eou__"], ["0"]))
    with pytest.raises(CorpusError, match=r"validation/dialogues_validation.txt:2: line 2 has no "
                                          r"counterpart in .*dialogues_emotion_validation.txt"):
        read_dailydialog(tmp_path, skip_bad_rows=True)  # never skippable

    write_dailydialog(tmp_path)
    (tmp_path / "test" / "dialogues_emotion_test.txt").unlink()
    with pytest.raises(CorpusError, match=r"test/dialogues_emotion_test.txt does not exist"):
        read_dailydialog(tmp_path)

    write_dailydialog(tmp_path, _dd_with("test", [], []))
    with pytest.raises(CorpusError, match=r"dialogues_test.txt: no dialogues \(the test split "
                                          r"would be empty\)"):
        read_dailydialog(tmp_path)
    write_dailydialog(tmp_path, _dd_with("test", ["Hi . __eou__ Yo . __eou__"], ["0"]))
    with pytest.raises(CorpusError, match=r"dialogues_test.txt: no dialogues left after skipping"):
        read_dailydialog(tmp_path, skip_bad_rows=True)


def test_dailydialog_crlf_and_empty_utterance(tmp_path):
    write_dailydialog(tmp_path)
    folder = tmp_path / "validation"
    (folder / "dialogues_validation.txt").write_bytes(b"Hi . __eou__  __eou__\r\n\r\n")
    (folder / "dialogues_emotion_validation.txt").write_bytes(b"3 0 \r\n")
    corpus = read_dailydialog(tmp_path)
    dev = corpus.split("dev")
    assert [(u.id, u.speaker, u.text, corpus.labels[u.label]) for u in dev[0].utterances] == \
        [("dev_dia0_utt0", "A", "Hi .", "fear"), ("dev_dia0_utt1", "B", "", "no_emotion")]
    assert corpus.info["empty_text"] == 1
