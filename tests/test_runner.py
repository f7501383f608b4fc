"""The shared batch-job runner: shards, resume, failures, absent items, merge, atomicity."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from feature_extraction.runner import (Absent, CorpusSource, JobError, check_job_identity,
                                       job_status, load_corpus, merge_job, parse_shard, run_job,
                                       shard_items, work_dir)
from multiemo.data.corpus import Corpus, Dialogue, Utterance
from multiemo.data.store import FeatureStore
from multiemo.errors import UserError

from builders import ToyExtractor, runner_corpus as toy_corpus, vector_of


def all_ids(corpus: Corpus) -> list[str]:
    return [u.id for u in corpus.utterances()]


def test_parse_shard():
    assert parse_shard("0/1") == (0, 1)
    assert parse_shard("3/4") == (3, 4)
    for bad in ("1/1", "-1/2", "a/b", "2", "1/0"):
        with pytest.raises(ValueError, match="shard"):
            parse_shard(bad)


def test_full_run_writes_the_store_in_corpus_order(tmp_path):
    corpus = toy_corpus()
    out = tmp_path / "features" / "toy.safetensors"
    ext = ToyExtractor(absent={"d1_u3"})
    summary = run_job(ext, corpus, out, device="cpu", progress=False)
    assert (summary.total, summary.done, summary.absent, summary.failed, summary.skipped) == \
        (35, 34, 1, 0, 0)
    assert summary.merged == out and ext.device.type == "cpu"
    store = FeatureStore(out)
    assert store.ids == all_ids(corpus)
    assert store.dim == 4 and store.info["extractor"] == "toy" and store.info["setting"] == 1
    assert store.info["absent"] == {"d1_u3": "no face"} and store.info["failed"] == {}
    vectors, present = store.get(store.ids)
    assert present.sum() == 34 and not present[store.ids.index("d1_u3")]
    utt = corpus.dialogues[2].utterances[5]
    np.testing.assert_array_equal(vectors[store.ids.index(utt.id)], vector_of(utt))


def test_bad_item_is_retried_alone_and_logged_while_the_job_goes_on(tmp_path):
    corpus = toy_corpus()
    out = tmp_path / "toy.safetensors"
    ext = ToyExtractor(broken={"d0_u2"}, returned_errors={"d4_u0"})
    summary = run_job(ext, corpus, out, progress=False)
    assert summary.failed == 2 and summary.done == 33
    assert set(summary.failures) == {"d0_u2", "d4_u0"}
    assert "unreadable clip" in summary.failures["d0_u2"]
    # the failed batch was retried item by item: its good neighbours are done
    assert ["d0_u0"] in ext.calls and ["d0_u2"] in ext.calls
    store = FeatureStore(out)  # failures end as absent rows, the reason in the metadata
    _, present = store.get(["d0_u2", "d4_u0", "d0_u1"])
    assert present.tolist() == [False, False, True]
    assert "bad sample rate" in store.info["failed"]["d4_u0"]
    log = [json.loads(line) for line in
           (work_dir(out) / "failures-s0of1.jsonl").read_text().splitlines()]
    assert {r["id"] for r in log} == {"d0_u2", "d4_u0"}
    assert all(r["error"] for r in log)
    assert any("extract" in line for r in log if r["id"] == "d0_u2" for line in r["traceback"])
    # a rerun retries only the failed items; once they succeed, the store has them
    fixed = ToyExtractor()
    again = run_job(fixed, corpus, out, progress=False)
    assert again.skipped == 33 and again.done == 2
    assert sorted(i for call in fixed.calls for i in call) == ["d0_u2", "d4_u0"]
    assert FeatureStore(out).present.all() and FeatureStore(out).info["failed"] == {}


def test_shards_split_the_job_and_merge_once_complete(tmp_path):
    corpus = toy_corpus()
    whole = tmp_path / "whole.safetensors"
    run_job(ToyExtractor(), corpus, whole, progress=False)
    out = tmp_path / "sharded.safetensors"
    first = run_job(ToyExtractor(), corpus, out, shard=(0, 3), progress=False)
    assert first.merged is None and not out.exists()
    assert job_status(out)["missing"] == 35 - first.total
    with pytest.raises(JobError, match="not been attempted"):
        merge_job(out)
    run_job(ToyExtractor(), corpus, out, shard=(2, 3), progress=False)
    # a shard run twice does nothing new and duplicates nothing
    twice = ToyExtractor()
    assert run_job(twice, corpus, out, shard=(2, 3), progress=False).skipped == 11
    assert twice.calls == []
    last = run_job(ToyExtractor(), corpus, out, shard=(1, 3), progress=False)
    assert last.merged == out
    assert [first.total, last.total] == [12, 12]
    a, b = FeatureStore(whole), FeatureStore(out)
    assert a.ids == b.ids
    np.testing.assert_array_equal(a.get(a.ids)[0], b.get(b.ids)[0])
    assert merge_job(out) == out  # an explicit merge is idempotent


def test_interrupted_run_resumes_without_recomputing(tmp_path):
    corpus = toy_corpus()
    out = tmp_path / "toy.safetensors"

    class Interrupted(ToyExtractor):
        def extract(self, items):
            if len(self.calls) == 5:
                raise KeyboardInterrupt
            return super().extract(items)

    with pytest.raises(KeyboardInterrupt):
        run_job(Interrupted(), corpus, out, progress=False, chunk_items=8)
    assert not out.exists()
    assert job_status(out)["done"] == 20  # five batches of four were finished and kept
    rest = ToyExtractor()
    summary = run_job(rest, corpus, out, progress=False)
    assert summary.skipped == 20 and summary.done == 15
    assert len({i for call in rest.calls for i in call}) == 15
    whole = tmp_path / "whole.safetensors"
    run_job(ToyExtractor(), corpus, whole, progress=False)
    np.testing.assert_array_equal(FeatureStore(out).get(all_ids(corpus))[0],
                                  FeatureStore(whole).get(all_ids(corpus))[0])


def test_hard_kill_leaves_only_whole_chunks(tmp_path):
    """os._exit mid-job (no cleanup at all): the rerun finishes with the same store."""
    corpus = toy_corpus()
    corpus_path = tmp_path / "corpus.json"
    corpus.save(corpus_path)
    out = tmp_path / "toy.safetensors"
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from builders import ToyExtractor
        from feature_extraction.runner import run_job
        from multiemo.data.corpus import Corpus
        class Killed(ToyExtractor):
            def extract(self, items):
                if len(self.calls) == 5:
                    os._exit(9)
                return super().extract(items)
        run_job(Killed(), Corpus.load({str(corpus_path)!r}), {str(out)!r}, progress=False,
                chunk_items=8)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    assert not out.exists()
    assert not list(work_dir(out).glob("*.tmp")) and not list(work_dir(out).glob(".*"))
    assert job_status(out)["done"] == 16  # two whole chunks of 8 survived the kill
    run_job(ToyExtractor(), corpus, out, progress=False)
    whole = tmp_path / "whole.safetensors"
    run_job(ToyExtractor(), corpus, whole, progress=False)
    assert FeatureStore(out).ids == FeatureStore(whole).ids
    np.testing.assert_array_equal(FeatureStore(out).get(all_ids(corpus))[0],
                                  FeatureStore(whole).get(all_ids(corpus))[0])


def test_other_settings_in_the_same_folder_are_refused(tmp_path):
    corpus = toy_corpus()
    out = tmp_path / "toy.safetensors"
    run_job(ToyExtractor(), corpus, out, shard=(0, 2), progress=False)
    with pytest.raises(JobError, match="other settings"):
        run_job(ToyExtractor(setting=2), corpus, out, shard=(1, 2), progress=False)
    with pytest.raises(JobError, match="other utterances"):
        run_job(ToyExtractor(), corpus, out, splits=["train"], progress=False)


def test_splits_order_and_batching(tmp_path):
    corpus = toy_corpus()
    ext = ToyExtractor(batch_size=5)
    out = tmp_path / "toy.safetensors"
    summary = run_job(ext, corpus, out, splits=["test"], order=lambda u: len(u.text),
                      progress=False)
    assert summary.total == 7 and FeatureStore(out).ids == [f"d2_u{u}" for u in range(7)]
    assert [len(c) for c in ext.calls] == [5, 2]
    lengths = [len(next(u for u in corpus.utterances() if u.id == i).text)
               for call in ext.calls for i in call]
    assert lengths == sorted(lengths)
    with pytest.raises(ValueError, match="not in corpus"):
        run_job(ext, corpus, tmp_path / "x.safetensors", splits=["valid"], progress=False)


def test_wrong_dimension_is_a_failure_not_a_corrupt_store(tmp_path):
    class Ragged(ToyExtractor):
        def extract(self, items):
            return [np.zeros(3 if u.id == "d0_u1" else 4) for u in items]

    summary = run_job(Ragged(), toy_corpus(1), tmp_path / "r.safetensors", progress=False)
    assert summary.failed == 1 and "dimension 3" in summary.failures["d0_u1"]


def test_progress_and_summary_go_to_stderr(tmp_path, capsys):
    run_job(ToyExtractor(absent={"d0_u0"}), toy_corpus(1), tmp_path / "t.safetensors")
    err = capsys.readouterr().err
    assert "6 done, 1 absent, 0 failed, 0 skipped" in err and "merged into" in err


def test_cli_helpers(tmp_path):
    from multiemo.cli import build_parser, split_overrides
    rest, overrides = split_overrides(["extract", "audio", "--config", "c.yaml", "a=1", "--shard",
                                        "1/2", "b.c=x"])
    args = build_parser().parse_args(rest)
    assert overrides == ["a=1", "b.c=x"] and args.shard == (1, 2) and not args.merge
    corpus = toy_corpus(2)
    corpus.save(tmp_path / "corpus.json")
    assert load_corpus(CorpusSource(path=str(tmp_path / "corpus.json"))) == corpus
    with pytest.raises(JobError, match="extraction reads corpus.path only: build it once with "
                                       "`multiemo corpus build --dataset swbd"):
        load_corpus(CorpusSource(dataset="swbd", root=str(tmp_path)))


def test_ctrl_c_swallowed_by_the_extractor_still_stops_the_job_and_loses_nothing(tmp_path):
    """Issue 9 item 6: a library callback (openSMILE) swallows the KeyboardInterrupt of Ctrl-C
    and turns it into item errors. The runner handles SIGINT itself: the job stops at the next
    batch boundary, keeps the finished chunks, logs no failure for the batch in flight, puts the
    previous handler back, and a rerun gives the store of an uninterrupted run."""
    import os
    import signal
    import time

    corpus = toy_corpus()
    out = tmp_path / "toy.safetensors"

    class Swallowing(ToyExtractor):
        def extract(self, items):
            if len(self.calls) == 5:
                self.calls.append([u.id for u in items])
                try:
                    os.kill(os.getpid(), signal.SIGINT)  # the user's Ctrl-C, mid-batch
                    time.sleep(0.2)
                except KeyboardInterrupt:
                    pass  # swallowed, as a C callback does
                return [RuntimeError("callback interrupted") for _ in items]
            return super().extract(items)

    before = signal.getsignal(signal.SIGINT)
    ext = Swallowing()
    with pytest.raises(KeyboardInterrupt):
        run_job(ext, corpus, out, progress=False, chunk_items=8)
    assert signal.getsignal(signal.SIGINT) is before
    assert len(ext.calls) == 6  # stopped at the batch boundary: no retry, no further batch
    assert not out.exists()
    status = job_status(out)
    assert status["done"] == 20 and status["failed"] == 0  # five batches kept, none failed
    failure_log = work_dir(out) / "failures-s0of1.jsonl"
    assert not failure_log.exists() or failure_log.read_text() == ""
    rest = ToyExtractor()
    summary = run_job(rest, corpus, out, progress=False)
    assert (summary.skipped, summary.done, summary.failed) == (20, 15, 0)
    whole = tmp_path / "whole.safetensors"
    run_job(ToyExtractor(), corpus, whole, progress=False)
    a, b = FeatureStore(out), FeatureStore(whole)
    assert a.ids == b.ids and a.present.all() and a.info["failed"] == {}
    np.testing.assert_array_equal(a.get(a.ids)[0], b.get(b.ids)[0])


def test_an_error_caused_by_an_interrupt_is_never_a_failure(tmp_path):
    """An extractor that catches KeyboardInterrupt and raises its own error (no signal at all):
    the runner stops with KeyboardInterrupt instead of retrying and logging failures."""
    corpus = toy_corpus(1)
    out = tmp_path / "toy.safetensors"

    class Converting(ToyExtractor):
        def extract(self, items):
            if len(self.calls) == 1:
                self.calls.append([u.id for u in items])
                try:
                    raise KeyboardInterrupt
                except KeyboardInterrupt:
                    raise RuntimeError("processing aborted")  # chained to the interrupt
            return super().extract(items)

    ext = Converting()
    with pytest.raises(KeyboardInterrupt):
        run_job(ext, corpus, out, progress=False, chunk_items=2)
    assert len(ext.calls) == 2  # no item-by-item retry of the interrupted batch
    assert job_status(out)["failed"] == 0 and job_status(out)["done"] == 4


def test_a_store_where_every_vector_is_absent_is_warned_about(tmp_path, caplog):
    import logging
    corpus = toy_corpus(1)
    out = tmp_path / "toy.safetensors"
    ext = ToyExtractor(absent={u.id for u in corpus.utterances()})
    with caplog.at_level(logging.WARNING, logger="feature_extraction"):
        summary = run_job(ext, corpus, out, progress=False)
    assert summary.merged == out and summary.absent == 7  # the job goes on and merges
    assert not FeatureStore(out).present.any()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "every one of its 7 vectors is absent" in warnings[0].getMessage()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="feature_extraction"):
        run_job(ToyExtractor(absent={"d0_u0"}), corpus, tmp_path / "ok.safetensors", progress=False)
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


def test_report_off_prints_and_warns_nothing_and_the_caller_gets_the_counts(tmp_path, capfd, caplog):
    """A caller whose work folder is temporary (Recognizer.predict) turns the report off: no
    summary naming its files, no warning naming them; the summary object still has the counts."""
    import logging
    corpus = toy_corpus(1)
    ext = ToyExtractor(absent={u.id for u in corpus.utterances()})
    with caplog.at_level(logging.DEBUG):
        summary = run_job(ext, corpus, tmp_path / "toy.safetensors", progress=False, report=False)
    assert (summary.absent, summary.merged) == (7, tmp_path / "toy.safetensors")
    assert capfd.readouterr() == ("", "")
    assert not [r for r in caplog.records if "toy.safetensors" in r.getMessage()]


def test_a_damaged_job_file_is_a_job_error_naming_it(tmp_path):
    corpus = toy_corpus(1)
    out = tmp_path / "toy.safetensors"
    run_job(ToyExtractor(), corpus, out, shard=(0, 2), progress=False)
    job_file = work_dir(out) / "job.json"
    job_file.write_text(job_file.read_text()[:20])
    with pytest.raises(JobError, match=r"job\.json: not a readable job file .* delete"):
        run_job(ToyExtractor(), corpus, out, shard=(1, 2), progress=False)
    with pytest.raises(JobError, match=r"job\.json"):
        merge_job(out)


def test_shard_items_splits_without_overlap_or_loss():
    items = list(range(10))
    shards = [shard_items(items, (k, 3)) for k in range(3)]
    assert shards == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    with pytest.raises(ValueError, match="shard 3/3"):
        shard_items(items, (3, 3))


def test_the_job_identity_check_writes_resumes_and_refuses_naming_what_differs(tmp_path):
    """The one identity check of every batch job (runner, predict, sweep, fine-tuning)."""
    record = tmp_path / "job" / "job.json"
    identity = {"settings": {"model": "m", "past": 2}, "items": ("a", "b")}
    common = dict(kind="toy job", fmt="toy-job", remedy="delete the folder")
    assert check_job_identity(record, identity, **common) is None and not record.exists()
    written = check_job_identity(record, identity, create={"version": 1, "path": "kept"}, **common)
    assert json.loads(record.read_text()) == written == {
        "format": "toy-job", "version": 1, "path": "kept",
        "settings": {"model": "m", "past": 2}, "items": ["a", "b"]}
    # the same job again: a tuple is the list it was written as; fields outside the identity
    # (the path) are not compared
    assert check_job_identity(record, {**identity, "items": ["a", "b"]}, **common) == written
    before = record.read_bytes()
    with pytest.raises(JobError) as refused:
        check_job_identity(record, {"settings": {"model": "m", "past": 3}, "items": ["a"]},
                           names={"settings": "other settings"}, **common)
    assert str(refused.value) == (
        f"{record}: made by a different toy job, with other settings and another items "
        f"(settings.past: 2, now 3; items: [\"a\", \"b\"], now [\"a\"]); delete the folder")
    assert record.read_bytes() == before  # a refusal writes nothing

    class StudyError(UserError):
        pass

    # a record already read (an Optuna study's user attributes), the identity under a key:
    # a field recorded but no longer given counts as a difference
    attrs = {"identity": {"space": 1, "seed": 7}, "other": "x"}
    assert check_job_identity({"other": "x"}, {"space": 1}, section="identity", kind="sweep",
                              remedy="r") is None
    with pytest.raises(StudyError, match=r"^study 's': made by a different sweep, with another seed "
                                         r"\(seed: 7, now null\); r$"):
        check_job_identity(attrs, {"space": 1}, section="identity", kind="sweep", remedy="r",
                           place="study 's'", error=StudyError)
    # a damaged record, or one of another kind, is named (never overwritten)
    record.write_text('{"format": "toy-job", "settings"')
    with pytest.raises(JobError, match=r"job\.json: not a readable job file .*; delete the folder$"):
        check_job_identity(record, identity, create={}, **common)
    record.write_text('{"format": "other-job"}')
    with pytest.raises(JobError, match=r"job\.json: not a record of a toy job \(format 'other-job', "
                                       r"expected 'toy-job'\); delete the folder$"):
        check_job_identity(record, identity, create={}, **common)


def test_the_runner_names_the_setting_that_differs(tmp_path):
    out = tmp_path / "toy.safetensors"
    run_job(ToyExtractor(), toy_corpus(1), out, progress=False)
    with pytest.raises(JobError) as refused:
        run_job(ToyExtractor(setting=2), toy_corpus(1), out, progress=False)
    assert f"{work_dir(out) / 'job.json'}: made by a different extraction job, with other " \
           f"settings (info.setting: 1, now 2); delete {work_dir(out)}" in str(refused.value)


@pytest.mark.parametrize("modality,extra", [
    ("text", []), ("text", ["mode=finetune", "--finetune-only"]), ("audio", []), ("visual", []),
    ("audio", ["--merge"])])
def test_an_unknown_split_is_one_line_with_exit_2(tmp_path, capsys, modality, extra):
    """`multiemo extract MODALITY ... splits=[validation]` names the bad split and the corpus's
    own, before any model is loaded or any file written."""
    from multiemo.cli import main as cli
    corpus = toy_corpus()
    corpus.save(tmp_path / "corpus.json")
    out = tmp_path / f"{modality}.safetensors"
    code = cli(["extract", modality, "--config", f"configs/extract/meld_{modality}.yaml",
                f"corpus.path={tmp_path / 'corpus.json'}", f"out={out}", "splits=[validation]",
                "--no-progress", *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.endswith("splits ['validation'] are not in corpus 'toy' (it has ['train', 'dev', "
                        "'test'])")
    assert not out.exists() and not work_dir(out).exists()
