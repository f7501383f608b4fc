"""The table of run.sh: per subset and preset, the test weighted-F1 (mean ± std over seeds) of the
preset as shipped and 4x longer, the epochs each stopped at, and whether the preset is within 1
point of the longer run.

    python experiments/presets_convergence/table.py runs/presets_convergence
"""

import json
import statistics
import sys
from pathlib import Path

from multiemo.run import RunDir


def seeds(folder: Path) -> list[dict]:
    runs = []
    for seed in sorted(folder.glob("seed-*")):
        record = RunDir(seed).record()  # run.json of any version
        report = json.loads((seed / "report.json").read_text())
        runs.append({"test": report["scores"]["weighted_f1"], "stopped": record.stopped.epoch,
                     "best": record.best_epoch, "valid": 100 * record.valid_score})
    return runs


def mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {std:.2f}"


def main(root: Path) -> None:
    print("| train dialogues | preset | test w-F1, preset | test w-F1, 4x longer | difference | "
          "best epoch (preset; 4x) | stopped at (preset; 4x) | within 1 point |")
    print("| --- | --- | ---: | ---: | ---: | --- | --- | --- |")
    sizes = {"emorynlp": "659 (EmoryNLP's)", "iemocap": "120 (IEMOCAP's)"}
    for subset in ("emorynlp", "iemocap"):
        for preset_dir in sorted((root / subset).iterdir()):
            if not (preset_dir / "x1").is_dir() or not (preset_dir / "x4").is_dir():
                continue
            x1, x4 = seeds(preset_dir / "x1"), seeds(preset_dir / "x4")
            if not x1 or not x4:
                continue
            a, b = statistics.mean(r["test"] for r in x1), statistics.mean(r["test"] for r in x4)
            stops = (", ".join(str(r["stopped"]) for r in x1) + "; "
                     + ", ".join(str(r["stopped"]) for r in x4))
            bests = (", ".join(str(r["best"]) for r in x1) + "; "
                     + ", ".join(str(r["best"]) for r in x4))
            print(f"| {sizes[subset]} | {preset_dir.name} | {mean_std([r['test'] for r in x1])} | "
                  f"{mean_std([r['test'] for r in x4])} | {a - b:+.2f} | {bests} | {stops} | "
                  f"{'yes' if b - a <= 1.0 else 'NO'} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
