"""Transfer between the two halves of CIFAR-10, on both backends: cifar_cnn pretrained on classes 0-4, then
fine-tuned on a small sample of classes 5-9, against the same model trained from random initialisation on
that sample for the same number of epochs.

    nice -n 5 python -m bench.transfer [--data-dir ../shared/data/cifar10-jpg.tar.gz] [--pretrain-epochs 4]
        [--pretrain-images 8000] [--train-images 2000] [--epochs 1] [--finetune-epochs 3] [--finetune-lr 1e-3]
        [--batch-size 32] [--out runs/bench-transfer]

1. pretraining: train_<backend>.py --classes 0,1,2,3,4 --train-images P for --pretrain-epochs (a finished
   run of the same settings is reused, an interrupted one continued, as run_lab.py does);
2. transfer_compare.py --weights <the pretraining experiment> --classes 5,6,7,8,9 --train-images N: feature
   extraction for --epochs, then fine-tuning of every block for --finetune-epochs at --finetune-lr, against
   from scratch for --epochs + --finetune-epochs at the same learning rate (1e-3).
Target: the fine-tuned model's test accuracy beats the from-scratch one's on both backends.
"""
from __future__ import annotations

import time

import transfer_compare
from bench.common import SHARED_CIFAR as CIFAR
from bench.common import benchmark_parser, run_benchmark
from lab.config.settings import make_settings
from lab.records.results import load_results
from lab.run.backend import in_training_order
from lab.run.reuse import ensure_run

MODEL = {"model": "cifar_cnn", "width": 16, "depth": 2, "dense_units": 64, "batch_size": 64}


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser("transfer", __doc__)
    parser.add_argument("--data-dir", default=CIFAR, help=f"the CIFAR-10 image tree (default {CIFAR})")
    parser.add_argument("--pretrain-epochs", type=int, default=4, help="epochs on classes 0-4 (default 4)")
    parser.add_argument("--pretrain-images", type=int, default=8000,
                        help="training images sampled from classes 0-4 (default 8000)")
    parser.add_argument("--train-images", type=int, default=2000,
                        help="training images sampled from classes 5-9 (default 2000)")
    parser.add_argument("--epochs", type=int, default=1, help="feature-extraction epochs on 5-9 (default 1)")
    parser.add_argument("--finetune-epochs", type=int, default=3, help="fine-tuning epochs on 5-9 (default 3)")
    parser.add_argument("--finetune-lr", type=float, default=1e-3,
                        help="fine-tuning learning rate (default 1e-3, the from-scratch one)")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size on 5-9 (default 32; the "
                                                                   "pretraining uses 64)")
    parser.add_argument("--out", default="runs/bench-transfer", help="root of the runs (default runs/bench-transfer)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    common_flags = {"dataset": "folder", "data_dir": args.data_dir, "out": args.out, **MODEL}
    pretrain = make_settings({**common_flags, "classes": "0,1,2,3,4", "train_images": args.pretrain_images,
                              "epochs": args.pretrain_epochs, "name": "cifar-first5"})
    for backend in in_training_order(("lightning", "keras")):
        ensure_run(backend, pretrain)
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in common_flags.items()]
    run_dirs, written = transfer_compare.compare([
        *flags, f"--weights={args.out}/cifar-first5", "--classes=5,6,7,8,9", f"--train-images={args.train_images}",
        f"--epochs={args.epochs}", f"--finetune-epochs={args.finetune_epochs}", "--unfreeze=all",
        f"--batch-size={args.batch_size}", f"--finetune-lr={args.finetune_lr}",
        "--name=cifar-last5"])
    print(f"\n{report(run_dirs)}\n\ncomparison: {written['markdown']}\n"
          f"whole benchmark: {(time.perf_counter() - started) / 60:.1f} min")


def report(run_dirs) -> str:
    """A Markdown table of the target runs, and whether fine-tuning beat training from scratch per backend."""
    results = [load_results(d) for d in run_dirs]
    lines = ["| Run | Backend | Test accuracy | Training time | Phases (test accuracy at each end) |",
             "| :--- | :---: | ---: | ---: | :--- |"]
    for r in results:
        phases = ", ".join(f"{p['name']} {100 * p['test_acc']:.2f}%" for p in r["extra"].get("phases", []))
        lines.append(f"| {r['experiment']} | {r['backend']} | {100 * r['test']['accuracy']:.2f}% | "
                     f"{r['timing']['total_s']:.1f}s | {phases or '-'} |")
    by = {(r["experiment"].rsplit("-", 1)[1], r["backend"]): r["test"]["accuracy"] for r in results}
    for backend in ("lightning", "keras"):
        gain = 100 * (by[("transfer", backend)] - by[("scratch", backend)])
        lines.append(f"\n{backend}: fine-tuned {'beats' if gain > 0 else 'does NOT beat'} from scratch by "
                     f"{gain:+.2f} points")
    return "\n".join(lines)


if __name__ == "__main__":
    run_benchmark(main)
