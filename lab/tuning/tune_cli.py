"""The command line of tune_keras.py and tune_lightning.py: a keras-tuner search of the cnn model's
hyperparameters, its trials trained with Keras or PyTorch Lightning (--backend)."""
from __future__ import annotations

import argparse

from core.cli import run_command
from lab.config.flags import LabArgumentParser, add_progress_flag, add_setting_flags
from lab.config.settings import ExperimentSettings, make_settings
from lab.progress import progress
from lab.run.backend import BACKENDS
from lab.tuning.search import TUNERS, SearchOptions, run_search
from lab.tuning.space import HELP as SPACE_HELP
from lab.tuning.space import NAMES as SPACE_NAMES
from lab.tuning.space import SearchSpace, parse_space

SETTINGS = ("dataset", "data_dir", "image_size", "resize", "classes", "seed", "val_fraction", "test_weights", "out",
            "accelerator", "gpus", "devices", "precision", "name")
DEFAULTS = SearchOptions()


def build_parser(prog: str, backend: str) -> LabArgumentParser:
    parser = LabArgumentParser(prog=prog, argument_default=argparse.SUPPRESS, description=(
        "Search the cnn model's hyperparameters with keras-tuner, then retrain the best configuration as a "
        "normal run and compare it with first_cnn trained as long. A stopped search continues where it left "
        "off when the same command runs again. Outputs: OUT/NAME/BACKEND/tuning (trials.csv, summary.md, one "
        "TensorBoard run per trial), OUT/NAME-best and OUT/NAME-first_cnn (the runs), OUT/NAME/BACKEND/comparison."))
    search = parser.add_argument_group("search")
    search.add_argument("--backend", choices=tuple(BACKENDS), default=backend,
                        help=f"framework that trains the trials (default: {backend})")
    search.add_argument("--tuner", choices=TUNERS, default=DEFAULTS.tuner,
                        help=f"search algorithm: {', '.join(TUNERS)} (default: {DEFAULTS.tuner})")
    search.add_argument("--max-trials", type=int, default=DEFAULTS.max_trials,
                        help=f"number of trials; for hyperband, a cap on its trials (default: {DEFAULTS.max_trials})")
    search.add_argument("--max-epochs", type=int, default=DEFAULTS.max_epochs,
                        help=f"epochs of a trial at most; hyperband's largest budget (default: {DEFAULTS.max_epochs})")
    search.add_argument("--patience", type=int, default=DEFAULTS.patience,
                        help="early stopping: a trial ends after this many epochs without a better validation "
                             f"accuracy (default: {DEFAULTS.patience})")
    search.add_argument("--max-params", type=int, default=DEFAULTS.max_params,
                        help=f"leave out models with more parameters (default: {DEFAULTS.max_params:,})")
    search.add_argument("--trial-fraction", type=float, default=DEFAULTS.trial_fraction,
                        help="fraction of the training images each trial trains on, for a faster search; the "
                             f"validation images and the retrained best use all (default: {DEFAULTS.trial_fraction})")
    search.add_argument("--max-trial-images", type=int, default=None, metavar="N",
                        help="and at most N of them, whatever the size of the dataset (default: no limit)")
    search.add_argument("--time-budget", type=float, default=None, metavar="MINUTES",
                        help="search for at most this long: no trial starts that would, at the mean trial time, "
                             "end later; the same command continues afterwards (default: no limit)")
    search.add_argument("--epochs", type=int, default=None,
                        help="epochs of the retrained best configuration and of first_cnn (default: --max-epochs)")
    search.add_argument("--no-retrain", dest="retrain", action="store_false", default=True,
                        help="stop after the search: no retraining, no comparison")
    search.add_argument("--top", type=int, default=DEFAULTS.top,
                        help=f"number of best trials in the summary (default: {DEFAULTS.top})")
    search.add_argument("--overwrite", action="store_true", default=False,
                        help="delete this search's trials and start afresh instead of continuing it")
    cluster = parser.add_argument_group(
        "distributed search (keras-tuner's chief and workers, set by KERASTUNER_TUNER_ID, KERASTUNER_ORACLE_IP and "
        "KERASTUNER_ORACLE_PORT; scripts/launch_search.py starts them)")
    cluster.add_argument("--chief-wait", type=float, default=DEFAULTS.chief_wait, metavar="SECONDS",
                         help=f"a worker gives up when no chief answers within this time (default: "
                              f"{DEFAULTS.chief_wait:g})")
    cluster.add_argument("--worker-timeout", type=float, default=DEFAULTS.worker_timeout, metavar="SECONDS",
                         help="the chief gives up when no worker has called for this long while trials run "
                              f"(default: {DEFAULTS.worker_timeout:g})")
    cluster.add_argument("--worker-silence", type=float, default=DEFAULTS.worker_silence, metavar="SECONDS",
                         help="the trial of a worker silent for this long goes back to the queue, and another worker "
                              "trains it again from its checkpoints; workers call every 10 s or a quarter of this, "
                              f"whichever is shorter. Give every process the same value (default: "
                              f"{DEFAULTS.worker_silence:g})")
    space = parser.add_argument_group("search space (each flag narrows or widens one setting)")
    for name in SPACE_NAMES:
        shown = SearchSpace().text(name)
        space.add_argument("--" + name.replace("_", "-"), metavar="MIN-MAX" if name == "blocks" else "LIST",
                           help=f"{SPACE_HELP[name]} (default: {shown})")
    data = parser.add_argument_group("data, output and devices")
    add_setting_flags(data, SETTINGS, help={"name": "name of the search (default: tune-<dataset>)"})
    add_progress_flag(data)
    return parser


def options(args: argparse.Namespace) -> tuple[ExperimentSettings, SearchOptions]:
    """The base settings (data, output, devices) and the search options the flags give."""
    given = vars(args)
    base = make_settings({k: v for k, v in given.items() if k in SETTINGS})
    space = parse_space({k: v for k, v in given.items() if k in SPACE_NAMES})
    keys = ("backend", "tuner", "max_trials", "max_epochs", "patience", "epochs", "max_params", "trial_fraction",
            "max_trial_images", "time_budget", "overwrite", "retrain", "top", "chief_wait", "worker_timeout",
            "worker_silence")
    return base, SearchOptions(space=space, **{k: given[k] for k in keys})


def main(argv: list[str] | None = None, backend: str = "keras") -> int:
    prog = "tune_lightning.py" if backend == "lightning" else "tune_keras.py"
    args = build_parser(prog, backend).parse_args(argv)
    code, _ = run_command(lambda: _search(args),
                          "the finished trials are saved; run the same command to continue the search.")
    return code


def keras(argv: list[str] | None = None) -> int:
    return main(argv, backend="keras")


def lightning(argv: list[str] | None = None) -> int:
    return main(argv, backend="lightning")


def _search(args: argparse.Namespace):
    with progress(getattr(args, "progress", None)):
        return run_search(*options(args))
