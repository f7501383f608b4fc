"""How the files beside this one were made: with the code of commit 55f6d61 (before the model
was assembled from named components), a tiny model folder exported by that code and the
state_dicts and outputs of three tiny models built by it. tests/test_components.py loads them.

    git worktree add /tmp/old 55f6d61
    cd /tmp/old && PYTHONPATH=/tmp/old python /path/to/this/make.py OUT_DIR
"""
import json
import shutil
import sys
from pathlib import Path


def main(out: Path) -> None:
    import torch
    import yaml
    from safetensors.torch import save_file

    sys.path.insert(0, "/tmp/old/tests")
    from multiemo.cli import main as cli
    from multiemo.config import to_dict
    from multiemo.model import build_model
    from test_predict import ROWS, LABELS, write_csv
    from test_text_corpora_pipeline import TINY
    from test_text_extraction import make_model_dir
    from test_model import small, random_batch, MELD, IEMOCAP

    out.mkdir(parents=True, exist_ok=True)
    tmp = Path("/tmp/oldfix/work"); shutil.rmtree(tmp, ignore_errors=True); tmp.mkdir(parents=True)

    # 1. state_dicts and outputs of three tiny assemblies
    tensors, configs = {}, {}
    feats, speaker, mask = random_batch(3, 6, [6, 4, 1])
    for name, cfg in (("meld", small(MELD)), ("iemocap", small(IEMOCAP, num_layers=1)), ("concat", small(MELD, multiattn=False))):
        torch.manual_seed(0)
        model = build_model(cfg).eval()
        with torch.no_grad():
            o = model(feats, speaker, mask)
        for k, v in model.state_dict().items():
            tensors[f"{name}/state/{k}"] = v.contiguous()
        tensors[f"{name}/logits"] = o.logits.contiguous()
        tensors[f"{name}/z"] = o.z.contiguous()
        configs[name] = to_dict(cfg)
    for m, f in feats.items():
        tensors[f"batch/{m}"] = f.contiguous()
    tensors["batch/speaker_mask"] = speaker.contiguous()
    tensors["batch/mask"] = mask.contiguous()
    save_file(tensors, str(out / "old_models.safetensors"))
    (out / "old_models.json").write_text(json.dumps(configs, indent=1) + "\n")

    # 2. a model folder written by that code's export
    bert = make_model_dir(tmp / "bert", "bert")
    data = tmp / "data"
    source = write_csv(tmp / "mine.csv", ROWS)
    assert cli(["corpus", "build", "--dataset", "conversations", "--root", str(source), "--out",
                str(data / "corpus.json"), "--labels", LABELS]) == 0
    job = tmp / "text.yaml"
    job.write_text(yaml.safe_dump({"corpus": {"path": str(data / "corpus.json")},
                                   "out": str(data / "features" / "text.safetensors"),
                                   "model": str(bert), "mode": "frozen", "past": 2, "pooling": "mean",
                                   "batch_size": 8, "device": "cpu"}))
    assert cli(["extract", "text", "--config", str(job), "--no-progress"]) == 0
    run = tmp / "run"
    assert cli(["train", "--config", "configs/emorynlp.yaml", "--run-dir", str(run), f"data.root={data}",
                *TINY, "train.lr=3e-3", "dataset=mine", "model.num_classes=3", "model.num_speakers=3"]) == 0
    assert cli(["export", str(run), "--out", str(out / "old_model_folder")]) == 0
    from multiemo.recognizer import Recognizer
    rows = [{"dialogue_id": d, "utterance_index": i, "speaker": sp, "text": t} for d, i, sp, t, _, _ in ROWS]
    preds = Recognizer.from_pretrained(out / "old_model_folder", device="cpu").predict(rows)
    (out / "old_model_folder_predictions.json").write_text(json.dumps(
        {"rows": rows, "probabilities": [p.probabilities for p in preds]}, indent=1) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
