"""The command line of predict.py (console script lab-predict): a table of each image's top classes, and a CSV of
them, one row per image (file, top1, p_top1, top2, p_top2, ...)."""
from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

from core.cli import run_command
from core.errors import LabError
from core.io import write_text_atomic
from lab.predict.classify import CHECKPOINTS, Prediction, Predictions, classify


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="predict.py", description="Classify image files, or the images of folders, "
                                "with a finished run of either backend: each image is converted to the run's "
                                "grayscale or RGB and resized to its input as the run's images were (its --resize).")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished run, OUT/<experiment>/<backend>/version_N")
    p.add_argument("inputs", metavar="IMAGE_OR_FOLDER", nargs="+", help="image files, or folders searched for "
                   ".png/.jpg/.jpeg/.bmp images")
    p.add_argument("--checkpoint", choices=CHECKPOINTS, default=None,
                   help="the run's checkpoint to load (default: the weights its test used, results.json test.weights)")
    p.add_argument("--top-k", type=int, default=3, help="classes shown per image, most probable first (default 3)")
    p.add_argument("--out", default="predictions.csv", help="the CSV written (default predictions.csv)")
    p.add_argument("--skip-bad", action="store_true", help="leave out images that cannot be decoded, and list them")
    p.add_argument("--data-dir", default=None, help="the run's dataset, needed only by a Lightning checkpoint "
                   "written before checkpoints held their network (its mean and std are recomputed)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    code, _ = run_command(lambda: predict(args), "nothing was written.")
    return code


def predict(args: argparse.Namespace) -> Predictions:
    out = csv_path(args.out)
    found = classify(args.run_dir, args.inputs, args.checkpoint, args.top_k, args.skip_bad, args.data_dir)
    print(table(found))
    for file in found.skipped:
        print(f"skipped (cannot be decoded): {file}", file=sys.stderr)
    try:
        write_text_atomic(out, csv_text(found.rows))
    except OSError as e:
        raise LabError(f"cannot write --out {out} ({e.strerror}); give a writable path.") from None
    print(f"{len(found.rows)} images classified with {found.checkpoint}; predictions: {out}")
    return found


def csv_path(out: str) -> Path:
    """--out, refused before any work when it cannot be a file."""
    path = Path(out)
    if path.is_dir():
        raise LabError(f"--out {path} is a folder; give the path of the CSV file to write.")
    blocking = next((parent for parent in path.parents if parent.exists() and not parent.is_dir()), None)
    if blocking is not None:
        raise LabError(f"--out {path} cannot be created because {blocking} is a file; give another path.")
    return path


def resized(row: Prediction, input_size: tuple[int, int]) -> str:
    """'WxH -> wxh' when the image was resized to the network's input, else empty."""
    return "" if row.size == input_size else "{}x{} -> {}x{}".format(*row.size, *input_size)


def table(found: Predictions) -> str:
    rows = [(row.file, "  ".join(f"{name} {p:.3f}" for name, p in row.top), resized(row, found.input_size))
            for row in found.rows]
    header = ("file", f"top {len(found.rows[0].top)} (probability)", "resized")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in [header, *rows])


def csv_text(rows: list[Prediction]) -> str:
    k = len(rows[0].top)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["file", *(name for i in range(1, k + 1) for name in (f"top{i}", f"p_top{i}"))])
    for row in rows:
        writer.writerow([row.file, *(cell for name, p in row.top for cell in (name, f"{p:.6f}"))])
    return buffer.getvalue()
