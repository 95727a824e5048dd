"""results.json: what every run leaves behind, the same fields for both backends.

Fields:
  schema               1
  experiment, backend  e.g. "first_cnn-digits", "lightning" | "keras"
  model, dataset       model name, dataset name; data_source says which files were read
  hyperparameters      every setting of the run (lab.config.settings.ExperimentSettings as a dict)
  params               {"total": int, "trainable": int}
  flops_per_image      forward FLOPs of one image: 2 per multiply-add of the convolutions and dense layers
                       (lab.specs.architectures.forward_flops); absent in runs made before it was recorded
  test                 {"loss": float, "accuracy": float,  (accuracy micro-averaged, in [0, 1])
                        "weights": "last" | "best", "weights_epoch": int,  (--test-weights: the epoch tested)
                        "bn_recalibration": {"images", "layers", "accuracy_before", "seconds"}}  (--bn-recalibration,
                        when on: the test accuracy before the batch norms' statistics were recomputed, and how long
                        that took; lab.run.recalibration)
  timing               {"total_s", "first_epoch_s", "steady_epoch_s", "epoch_s": [...], "images_per_s",
                        "compiled" (--compile), "compile_s" (a compiled run's first epoch beyond a steady one)}
  history              [{"epoch": 1, "train/loss", "train/acc", "val/loss", "val/acc", "time/epoch_s"}, ...]
  epochs_run           int
  class_names          [str, ...]
  machine              lab.config.machine.machine_info()
  finished_at          ISO time
  extra                backend- or experiment-specific additions (phases of transfer learning, ...)
  profile              a steady training step in ms, measured after training (lab.records.profile): {"step_ms",
                       "compute_ms", "data_ms", "overhead_ms", "steps", "machine"}; null with --profile false,
                       on Keras with several replicas, or with epochs too short to time
"""
from __future__ import annotations

import json
from pathlib import Path

from core.errors import LabError
from core.io import write_json_atomic

RESULTS_FILE = "results.json"
PREDICTIONS_FILE = "predictions.npz"
REQUIRED_FIELDS = ("schema", "experiment", "backend", "model", "dataset", "data_source", "hyperparameters",
                   "params", "test", "timing", "history", "epochs_run", "class_names", "machine", "finished_at")


def save_results(run_dir: str | Path, results: dict) -> Path:
    missing = [k for k in REQUIRED_FIELDS if k not in results]
    if missing:
        raise ValueError(f"results are missing fields: {', '.join(missing)}")
    return write_json_atomic(Path(run_dir) / RESULTS_FILE, results)


def load_results(run_dir: str | Path) -> dict:
    path = Path(run_dir) / RESULTS_FILE
    try:
        results = json.loads(path.read_text())
    except FileNotFoundError:
        raise LabError(f"{run_dir} is not a finished run: it has no {RESULTS_FILE}.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise LabError(f"{path} is not valid JSON ({e}); rerun that experiment or remove the folder.") from None
    missing = [k for k in REQUIRED_FIELDS if k not in results]
    if missing:
        raise LabError(f"{path} lacks the fields {', '.join(missing)}; it was not written by this version.")
    return results


def achieved_gflops(results: dict) -> float | None:
    """GFLOP/s achieved in training: 3x the forward FLOPs per training image (forward, and a backward of twice the
    forward's), times the training images per second; None where the run recorded either not."""
    flops, rate = results.get("flops_per_image"), (results.get("timing") or {}).get("images_per_s")
    return None if flops is None or rate is None else 3 * flops * rate / 1e9


def find_runs(root: str | Path) -> list[Path]:
    """Every folder under root holding a results.json, sorted."""
    return sorted(p.parent for p in Path(root).rglob(RESULTS_FILE))
