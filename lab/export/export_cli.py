"""The command line of export.py (console script lab-export)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from core.cli import run_command
from lab.export.export_run import EXPORT_JSON, FILES, FORMATS, TOLERANCE, Request, export_run
from lab.predict.classify import CHECKPOINTS


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="export.py",
        description="Export a finished run's network for deployment, float32, taking uint8 N x H x W x C images "
                    "named 'images' (any batch size) and giving 'logits': onnx (opset 18) or pt2 (torch.export) for a "
                    "Lightning run; onnx, saved_model or litert (.tflite) for a Keras run. Every export is run on "
                    "the run's test images (or seeded images when its dataset is not here) in its own runtime and "
                    f"compared with the network: it fails (exit 1) when a top-1 class differs or a logit differs by "
                    f"more than {TOLERANCE:g}. The folder holds the file and {EXPORT_JSON} (the check, the "
                    "opset, the input, the package versions).")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished run, OUT/<experiment>/<backend>/version_N")
    p.add_argument("--format", required=True, metavar="FORMAT",
                   help=f"one of {', '.join(FORMATS)} (files: {', '.join(FILES.values())})")
    p.add_argument("--checkpoint", choices=CHECKPOINTS, default=None,
                   help="the run's checkpoint to export (default: the weights its test used, results.json "
                        "test.weights)")
    p.add_argument("--out", default=None, help="the folder to write (default RUN_DIR/exported/FORMAT)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the folder when it exists (without it, an existing folder is an error)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    code, _ = run_command(lambda: export(args), "nothing was written.")
    return code


def export(args: argparse.Namespace) -> Path:
    out = export_run(Request(Path(args.run_dir), args.format, args.checkpoint,
                             Path(args.out) if args.out else None, args.overwrite))
    parity = json.loads((out / EXPORT_JSON).read_text())["parity"]
    print(f"{out / FILES[args.format]}: top-1 agrees on all {parity['count']} {parity['images']} images, largest "
          f"logit difference {parity['max_abs_logit_diff']:.2g}; details in {out / EXPORT_JSON}")
    return out
