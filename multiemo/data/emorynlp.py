"""Read EmoryNLP from its official JSON release into a :class:`~multiemo.data.corpus.Corpus`.

The release (the emotion-detection task of the Friends character-mining data) has
``emotion-detection-trn.json``, ``emotion-detection-dev.json`` and ``emotion-detection-tst.json``
(splits ``train``, ``dev``, ``test``), each laid out as::

    {"episodes": [{"episode_id": "s01_e01",
                   "scenes": [{"scene_id": "s01_e01_c01",
                               "utterances": [{"utterance_id": "s01_e01_c01_u001",
                                               "speakers": ["Monica Geller"],
                                               "transcript": "There's nothing to tell!",
                                               "emotion": "Neutral", ...}, ...]}, ...]}, ...]}

A scene is a dialogue: the dialogue id is ``scene_id`` and the utterance id ``utterance_id``
(both unique over the whole release), utterances in file order. Other keys (``tokens``...) are
ignored. Official sizes: 713 / 99 / 85 scenes and 9,934 / 1,344 / 1,328 utterances
(train / dev / test).

Labels: the seven emotions of :data:`EMORYNLP_LABELS`; the files capitalise them (``Joyful``,
``Mad``, ``Neutral``, ``Peaceful``, ``Powerful``, ``Sad``, ``Scared``) and they are matched
case-insensitively.

Speakers (:func:`emorynlp_speaker`): each name goes through
:func:`~multiemo.data.text.normalize_text`; an utterance with several ``speakers`` gets them
joined, in their listed order, with ``" & "`` into one speaker name (``["Ross Geller",
"Rachel Green"]`` → ``"Ross Geller & Rachel Green"``: the two speaking together are one party,
distinct from each of them alone); an empty list gets ``"unknown"``. Speakers are indexed by first
appearance in their scene (``speaker_vocab=None``); scenes have many speakers, and the most
distinct speakers in one scene is recorded in ``info["max_scene_speakers"]``. Transcripts go
through :func:`~multiemo.data.text.normalize_text`; an empty transcript is kept with ``text=""``
and counted (``info["empty_text"]``).

Bad input is an error naming the file: a missing file; malformed JSON (with the line and column
of :class:`json.JSONDecodeError`); a missing ``episodes`` / ``scenes`` / ``scene_id`` /
``utterances`` (naming the episode or scene); an utterance with a missing or ill-typed field, an
unknown emotion or a duplicate id (naming the scene and the utterance); an empty scene or a
duplicate scene id (naming the scene); a file without scenes. With ``skip_bad_rows=True`` the bad
utterances (reasons ``"missing field"``, ``"bad field"``, ``"unknown emotion"``,
``"duplicate id"``) and bad scenes (``"empty scene"``, ``"duplicate scene id"``, and
``"no utterances left"`` for a scene whose utterances were all skipped) are skipped and counted
in ``corpus.info["skipped"]`` (reason → count); a missing file, malformed JSON or a broken
episode/scene structure is always an error.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from multiemo.data.corpus import BadRecord, Corpus, CorpusError, Dialogue, Utterance
from multiemo.data.text import normalize_text

__all__ = ["read_emorynlp", "EMORYNLP_LABELS", "EMORYNLP_FILES", "emorynlp_speaker"]

EMORYNLP_LABELS = ("joyful", "mad", "neutral", "peaceful", "powerful", "sad", "scared")
EMORYNLP_FILES = {"train": "emotion-detection-trn.json", "dev": "emotion-detection-dev.json",
                  "test": "emotion-detection-tst.json"}
UNKNOWN_SPEAKER = "unknown"
SPEAKER_JOIN = " & "


def emorynlp_speaker(speakers: list[str]) -> str:
    """The one speaker name of an utterance's ``speakers`` list (see the module docstring).

    >>> emorynlp_speaker(["Ross Geller", "Rachel Green"]), emorynlp_speaker(["Joey Tribbiani"])
    ('Ross Geller & Rachel Green', 'Joey Tribbiani')
    >>> emorynlp_speaker([])
    'unknown'
    """
    names = [name for name in (normalize_text(s) for s in speakers) if name]
    return SPEAKER_JOIN.join(names) if names else UNKNOWN_SPEAKER


def _load(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise CorpusError(f"{path}: not UTF-8 text (byte {err.start}: {err.reason})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise CorpusError(f"{path}:{err.lineno}:{err.colno}: malformed JSON ({err.msg}, "
                          f"char {err.pos})") from None


def _utterance(raw: Any, position: int, label_index: dict[str, int],
               seen_utts: dict[str, str], where: str) -> tuple[str, str, list[str], str, int]:
    """(name for messages, id, speakers, transcript, label) of one raw utterance, or BadRecord."""
    name = f"utterance #{position}"
    if not isinstance(raw, dict):
        raise BadRecord("bad field", f"{name}: not a JSON object ({type(raw).__name__})")
    uid = raw.get("utterance_id")
    if uid is None or (isinstance(uid, str) and not uid.strip()):
        raise BadRecord("missing field", f"{name}: no 'utterance_id'")
    if not isinstance(uid, str):
        raise BadRecord("bad field", f"{name}: 'utterance_id' {uid!r} is not a string")
    name = f"utterance {uid!r}"
    missing = [key for key in ("speakers", "transcript", "emotion") if raw.get(key) is None]
    if missing:
        raise BadRecord("missing field", f"{name}: no {missing}")
    speakers, transcript, emotion = raw["speakers"], raw["transcript"], raw["emotion"]
    if not (isinstance(speakers, list) and all(isinstance(s, str) for s in speakers)):
        raise BadRecord("bad field", f"{name}: 'speakers' {speakers!r} is not a list of names")
    if not isinstance(transcript, str):
        raise BadRecord("bad field", f"{name}: 'transcript' {transcript!r} is not a string")
    key = emotion.strip().lower() if isinstance(emotion, str) else None
    if key not in label_index:
        raise BadRecord("unknown emotion", f"{name}: unknown emotion {emotion!r} (expected one "
                         f"of {[e.capitalize() for e in EMORYNLP_LABELS]}, any case)")
    if uid in seen_utts:
        raise BadRecord("duplicate id", f"{name}: duplicate utterance id (first in "
                         f"{seen_utts[uid]})")
    seen_utts[uid] = where
    return name, uid, speakers, transcript, label_index[key]


def _read_split(path: Path, split: str, skip: bool, skipped: Counter, counts: Counter,
                seen_scenes: dict[str, str], seen_utts: dict[str, str]) -> list[Dialogue]:
    label_index = {name: i for i, name in enumerate(EMORYNLP_LABELS)}
    data = _load(path)
    episodes = data.get("episodes") if isinstance(data, dict) else None
    if not isinstance(episodes, list):
        raise CorpusError(f"{path}: no 'episodes' list at the top level (not an EmoryNLP "
                          f"emotion-detection file)")
    dialogues: list[Dialogue] = []
    for e, episode in enumerate(episodes):
        eid = episode.get("episode_id") if isinstance(episode, dict) else None
        ename = f"episode {eid!r}" if eid is not None else f"episode #{e}"
        scenes = episode.get("scenes") if isinstance(episode, dict) else None
        if not isinstance(scenes, list):
            raise CorpusError(f"{path}: {ename} has no 'scenes' list")
        for s, scene in enumerate(scenes):
            sid = scene.get("scene_id") if isinstance(scene, dict) else None
            if not isinstance(sid, str) or not sid.strip():
                raise CorpusError(f"{path}: {ename}, scene #{s} has no 'scene_id'")
            raw_utts = scene.get("utterances")
            if not isinstance(raw_utts, list):
                raise CorpusError(f"{path}: scene {sid!r} has no 'utterances' list")
            problem = None
            if sid in seen_scenes:
                problem = ("duplicate scene id",
                           f"duplicate scene id (first in {seen_scenes[sid]})")
            elif not raw_utts:
                problem = ("empty scene", "empty scene (no utterances)")
            if problem is not None:
                if not skip:
                    raise CorpusError(f"{path}: scene {sid!r}: {problem[1]}")
                skipped[problem[0]] += 1
                continue
            seen_scenes[sid] = f"{path.name} {ename}"
            utts: list[Utterance] = []
            for k, raw in enumerate(raw_utts):
                try:
                    _, uid, speakers, transcript, label = _utterance(
                        raw, k, label_index, seen_utts, f"{path.name} scene {sid!r}")
                except BadRecord as bad:
                    bad.skip_or_raise(f"{path}: scene {sid!r}, ", skip, skipped)
                    continue
                named = [n for n in speakers if normalize_text(n)]
                counts["multi_speaker"] += len(named) > 1
                counts["unknown_speaker"] += not named
                utts.append(Utterance(id=uid, speaker=emorynlp_speaker(speakers), label=label,
                                      text=normalize_text(transcript)))
            if not utts:  # only with skip: every utterance of the scene was skipped
                skipped["no utterances left"] += 1
                continue
            dialogues.append(Dialogue(sid, split, tuple(utts)))
    if not dialogues:
        raise CorpusError(f"{path}: no scenes{' left after skipping bad ones' if skip else ''} "
                          f"(the {split} split would be empty)")
    return dialogues


def read_emorynlp(root: str | Path, *, skip_bad_rows: bool = False) -> Corpus:
    """Read EmoryNLP's three JSON files under ``root``.

    Args:
        root: the folder of ``emotion-detection-trn.json``, ``emotion-detection-dev.json`` and
            ``emotion-detection-tst.json``.
        skip_bad_rows: skip (and count) bad utterances and scenes instead of raising.

    Returns:
        The 7-class corpus (:data:`EMORYNLP_LABELS`), one dialogue per scene; ``info`` holds the
        source, the files read, per-reason skipped counts, the number of empty transcripts, of
        utterances with several speakers and with none, and the most speakers in one scene.

    Raises:
        CorpusError: a missing file, malformed JSON (file, line and column), a broken
            episode/scene structure, or a bad utterance or scene (without ``skip_bad_rows``),
            naming the file, scene and utterance.
    """
    root = Path(root)
    skipped: Counter = Counter()
    counts: Counter = Counter()
    seen_scenes: dict[str, str] = {}
    seen_utts: dict[str, str] = {}
    dialogues: list[Dialogue] = []
    for split, name in EMORYNLP_FILES.items():
        path = root / name
        if not path.is_file():
            raise CorpusError(f"EmoryNLP file {path} does not exist (root {root})")
        dialogues += _read_split(path, split, skip_bad_rows, skipped, counts, seen_scenes,
                                 seen_utts)
    utterances = [u for d in dialogues for u in d.utterances]
    info = {"source": str(root), "reader": "emorynlp", "files": dict(EMORYNLP_FILES),
            "skipped": dict(skipped), "empty_text": sum(1 for u in utterances if not u.text),
            "multi_speaker": counts["multi_speaker"], "unknown_speaker": counts["unknown_speaker"],
            "max_scene_speakers": max(len({u.speaker for u in d.utterances}) for d in dialogues)}
    return Corpus("emorynlp", EMORYNLP_LABELS, tuple(dialogues), speaker_vocab=None, info=info)
