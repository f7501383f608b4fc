"""The chain from media files to predictions (`multiemo demo --media`, reduced): synthetic wav /
mp4 / text conversations → corpus build → extract text, audio (openSMILE), visual (LBP faces,
tiny ViT) → train → export → predict; then what a three-modality model does with new media:
it reproduces the run's test predictions from the raw files, predicts utterances with missing or
corrupt media from the other modalities, and a killed sharded predict resumes to the same output."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from multiemo.cli import main as cli
from multiemo.demo import run_media_demo
from multiemo.demo_media import make_text_encoder
from builders import read_csv

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    text = make_text_encoder(out / "bert")
    result = run_media_demo(out, dialogues={"train": 10, "dev": 3, "test": 3}, epochs=3, seed=7,
                            text_model=str(text))
    return {"out": out, **result}


def test_the_demo_chain_from_media_to_a_prediction(demo, capsys):
    out = demo["out"]
    model = Path(demo["model"])
    config = json.loads((model / "config.json").read_text())
    assert config["modalities"] == ["text", "audio", "visual"]
    assert config["features"]["audio"]["settings"]["opensmile"] == {"feature_set": "eGeMAPSv02"}
    assert config["features"]["visual"]["files"] == {"encoder.model": "visual/encoder"}
    assert (model / "visual" / "encoder" / "config.json").is_file()
    rows = demo["predictions"]
    assert rows and all(r["dialogue_id"] == "new0" for r in rows)
    assert all(all(r["present"].values()) and not r["notes"] for r in rows)  # every face found
    assert (out / "predictions" / "plots" / "dialogues" / "000000_new0.png").is_file()
    assert set(demo["scores"]) >= {"weighted_f1", "per_class_f1"}


def test_three_modality_predictions_from_media_reproduce_the_test_predictions(demo, tmp_path):
    out = tmp_path / "pred"
    assert cli(["predict", "--model", demo["model"], "--input", str(demo["out"] / "raw" / "conversations.csv"),
                "--out", str(out), "--no-progress", "--device", "cpu"]) == 0
    ours = {r["utterance_id"]: r for r in read_csv(out / "predictions.csv")}
    theirs = read_csv(demo["out"] / "run" / "predictions_test.csv")
    assert theirs
    labels = [k[2:] for k in theirs[0] if k.startswith("p_")]
    for row in theirs:
        mine = ours[row["utterance_id"]]
        assert mine["prediction"] == row["prediction"]
        for c in labels:
            assert abs(float(mine[f"p_{c}"]) - float(row[f"p_{c}"])) <= 1e-5, (row["utterance_id"], c)


def test_missing_and_corrupt_media_are_predicted_from_the_rest(demo, tmp_path, capsys):
    raw = demo["out"] / "raw"
    rows = read_csv(Path(demo["heldout"]))
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    rows[0]["audio"] = str(tmp_path / "gone.wav")
    rows[1]["video"] = str(corrupt)
    from feature_extraction._synthetic import write_wav
    rows[2]["audio"] = str(write_wav(tmp_path / "long.wav", duration=61.0))  # max_duration is 60 s
    source = tmp_path / "new.csv"
    with source.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    out = tmp_path / "pred"
    assert cli(["predict", "--model", demo["model"], "--input", str(source), "--media-root", str(raw),
                "--out", str(out), "--no-progress", "--device", "cpu"]) == 0
    got = read_csv(out / "predictions.csv")
    assert (got[0]["present_audio"], got[0]["present_visual"], got[0]["present_text"]) == ("0", "1", "1")
    assert "audio failed" in got[0]["notes"] and "gone.wav" in got[0]["notes"]
    assert (got[1]["present_audio"], got[1]["present_visual"]) == ("1", "0")
    assert "visual failed" in got[1]["notes"] and "predicted without visual" in got[1]["notes"]
    assert got[2]["present_audio"] == "0" and "max_duration" in got[2]["notes"]
    assert all(r["prediction"] for r in got) and not any(r["notes"] for r in got[3:])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["present"] == {"text": len(got), "audio": len(got) - 2, "visual": len(got) - 1}
    assert summary["with_notes"] == 3
    # the failures are in the runner's failure logs of the shard
    logs = list((out / "shards" / "s0of1" / "features").glob("*.work/failures-*.jsonl"))
    assert sorted(len(log.read_text().splitlines()) for log in logs) == [1, 2]


def _predict(demo, out: Path, shard: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "multiemo.cli", "predict", "--model", demo["model"], "--input",
         str(demo["out"] / "raw" / "conversations.csv"), "--out", str(out), "--shard", shard,
         "--no-progress", "--device", "cpu"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def test_a_killed_sharded_predict_reruns_to_the_uninterrupted_output(demo, tmp_path):
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    for shard in ("0/2", "1/2"):  # uninterrupted, in this process
        assert cli(["predict", "--model", demo["model"], "--input",
                    str(demo["out"] / "raw" / "conversations.csv"), "--out", str(clean), "--shard",
                    shard, "--no-progress", "--device", "cpu"]) == 0
    # kill shard 0 once its text features are done and its media extraction is under way
    proc = _predict(demo, killed, "0/2")
    shard = killed / "shards" / "s0of2"
    deadline = time.monotonic() + 120
    while not (shard / "features" / "audio.safetensors.work" / "job.json").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "shard 0 finished before the kill"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (shard / "predictions.jsonl").exists() and (shard / "features" / "text.safetensors").exists()
    for shard_arg in ("0/2", "1/2"):  # rerun: text is not extracted again; shard 1 merges
        proc = _predict(demo, killed, shard_arg)
        err = proc.communicate(timeout=300)[1].decode()
        assert proc.returncode == 0, err
        if shard_arg == "0/2":
            assert "0 done, 0 absent, 0 failed" in err.split("merged into")[0]  # text: all skipped
    for name in ("predictions.csv", "predictions.jsonl"):
        assert (killed / name).read_bytes() == (clean / name).read_bytes()


@pytest.mark.slow
def test_the_full_media_demo_runs_in_under_three_minutes(tmp_path):
    """`multiemo demo --media` at its full size, as a user runs it (MiniLM when installed)."""
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "multiemo.cli", "demo", "--media", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    seconds = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Per-class table of the trained model" in proc.stdout and "new0_utt0" in proc.stdout
    assert json.loads((tmp_path / "run" / "report.json").read_text())["scores"]["weighted_f1"] > 70
    assert seconds < 180, seconds
