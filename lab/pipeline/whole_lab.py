"""run_lab.py: every section of the lab, on both backends, into one report; finished work is reused."""
from __future__ import annotations

import argparse
from pathlib import Path

from core.cli import run_command
from core.io import write_text_atomic
from lab.config.data import load_data
from lab.config.devices import require_one_device
from lab.config.flags import LabArgumentParser, add_progress_flag, add_setting_flags
from lab.config.machine import machine_info
from lab.config.settings import HELP, make_settings
from lab.pipeline.lab_progress import LabProgress, Step
from lab.pipeline.plan import PRESETS, SECTIONS, class_halves, experiments, first_cnn, parse_sections
from lab.pipeline.sections import RENDERERS
from lab.pipeline.tuned import Search, tuned_run
from lab.pipeline.versus import versus_part
from lab.pipeline.writeup import BACKEND_TITLES, header, section_heading, section_spreads
from lab.progress import progress
from lab.reports.peak_share import FRAMEWORK_OF, PEAK_FILE, machine_peak
from lab.run.backend import in_training_order, parse_backends
from lab.run.reuse import ensure_run

REPORT_NAME = "lab-report.md"
REPORT_ORDER = ("keras", "lightning")
DEVICE_FLAGS = ("accelerator", "gpus", "devices", "precision", "test_weights")  # every run of the lab takes them


def build_parser() -> argparse.ArgumentParser:
    p = LabArgumentParser(prog="run_lab.py", description="Run the lab's sections on Keras and PyTorch Lightning "
                          "and write one Markdown report (OUT/lab-report.md). Finished experiments are reused.")
    p.add_argument("--preset", choices=sorted(PRESETS), default="quick",
                   help="quick: few epochs and small searches, minutes on a CPU; full: the lab's settings")
    p.add_argument("--sections", default="all",
                   help="sections to run: 'all' or numbers/names, e.g. 1,2 "
                        f"({', '.join(f'{k}={v}' for k, v in SECTIONS.items())})")
    p.add_argument("--mnist-dataset", default="mnist", help="dataset for section 1 (e.g. fashion_mnist, digits)")
    p.add_argument("--cifar-dataset", default="cifar10", help="dataset for sections 2-4 (e.g. folder)")
    add_setting_flags(p, ["data_dir"], parse_defaults=True,
                      help={"data_dir": "data folder or archive for both datasets, unless given apart below"})
    p.add_argument("--mnist-data-dir", help="data folder for the MNIST-like dataset")
    p.add_argument("--cifar-data-dir", help="data folder or archive for the CIFAR-like dataset")
    add_setting_flags(p, ["image_size", "resize"], parse_defaults=True, metavars={"image_size": "N"}, help={
        "image_size": "sections 2-4: resize every image to N x N pixels at load, e.g. for a folder of photos of mixed "
                      "sizes (default: the images as they are)"})
    p.add_argument("--backends", default=",".join(REPORT_ORDER), help="comma-separated: keras, lightning")
    add_setting_flags(p, ["out", "seed"], parse_defaults=True, defaults={"out": "runs/lab"},
                      help={"out": "folder of the lab's runs and report", "seed": "random seed of every run"})
    p.add_argument("--rerun", action="store_true", help="run every experiment again instead of reusing it")
    p.add_argument("--no-spread-seed", dest="spread_seed", action="store_false",
                   help="skip each section's baseline run again with seed+1 (3 runs per backend), which measures "
                        "the section's run-to-run spread; the comparisons then say the spread is unknown")
    add_setting_flags(p, DEVICE_FLAGS, parse_defaults=True, help={
        "accelerator": "auto, cpu or gpu, for both backends",
        "gpus": "number of GPUs for both backends; 0 means the CPU",
        "devices": "'auto', or one device: the lab trains its runs one after another on one device",
        "precision": "numeric precision for both backends",
        "test_weights": f"every run: {HELP['test_weights']}"})
    add_progress_flag(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code, report = run_command(lambda: _with_progress(args),
                               "run the same command again to continue where the lab stopped.")
    if report is not None:
        print(f"\nlab report: {report}")
    return code


def _with_progress(args) -> Path:
    with progress(args.progress):
        return run_lab(args)


def run_lab(args) -> Path:
    sections, backends = parse_sections(args.sections), _backends(args.backends)
    preset = {**PRESETS[args.preset], "name": args.preset}
    data = {"mnist": {"dataset": args.mnist_dataset, "data_dir": args.mnist_data_dir or args.data_dir},
            "cifar": {"dataset": args.cifar_dataset, "data_dir": args.cifar_data_dir or args.data_dir,
                      **({"image_size": args.image_size, "resize": args.resize} if args.image_size else {})}}
    common = {name: getattr(args, name) for name in ("out", "seed", *DEVICE_FLAGS)}
    require_one_device(make_settings(common))
    data_lines, cifar_classes = _check_data(data, sections)
    runs: dict[str, dict[str, dict[str, Path]]] = {b: {} for b in backends}
    searches: dict[str, Search] = {}  # section 1.4 per backend
    tracker = LabProgress(lab_steps(backends, sections, preset, data, cifar_classes, args.spread_seed))
    for backend in in_training_order(backends):
        for section in sections:
            runs[backend][section], search = _run_section(backend, section, preset, data, cifar_classes, common,
                                                          args.rerun, args.spread_seed, tracker)
            if search is not None:
                searches[backend] = search
    return write_report(Path(args.out), args.preset, sections, runs, searches, data_lines)


TUNED_STEP = ("tuned_cnn", "keras-tuner search and tuned CNN")


def lab_steps(backends: list[str], sections: list[str], preset: dict, data: dict, cifar_classes: int,
              spread: bool) -> list[Step]:
    """Every run of the lab, in the order run_lab trains them."""
    steps = []
    for backend in in_training_order(backends):
        for section in sections:
            exps = experiments(section, preset, data["mnist"], data["cifar"], cifar_classes, spread)
            steps += [Step(backend, section, exp.key, exp.label) for exp in exps]
            steps += [Step(backend, section, *TUNED_STEP)] if section == "mnist" else []
    return steps


def _run_section(backend: str, section: str, preset: dict, data: dict, cifar_classes: int, common: dict,
                 rerun: bool, spread: bool, tracker: LabProgress) -> tuple[dict[str, Path], Search | None]:
    """One section's experiments on one backend: (experiment key -> run folder, section 1.4's search)."""
    done: dict[str, Path] = {}
    for exp in experiments(section, preset, data["mnist"], data["cifar"], cifar_classes, spread):
        weights = {"weights": str(done[exp.weights_from])} if exp.weights_from else {}
        name = f"{exp.key}-{exp.settings['dataset']}"
        seed = {"seed": common["seed"] + exp.seed_offset}
        settings = make_settings({**exp.settings, **common, **weights, **seed, "name": name})
        step = Step(backend, section, exp.key, exp.label)
        tracker.begin(step)
        done[exp.key], what = ensure_run(backend, settings, rerun)
        _ended(tracker, step, what, done[exp.key])
    if section != "mnist":
        return done, None
    baseline = {**first_cnn(preset, data["mnist"]), **common}
    step = Step(backend, section, *TUNED_STEP)
    tracker.begin(step)
    search, done["tuned_cnn"], what = tuned_run(backend, baseline, preset, rerun)
    _ended(tracker, step, what, done["tuned_cnn"])
    return done, search


def _ended(tracker: LabProgress, step: Step, what: str, run_dir: Path) -> None:
    print(f"[{step.section}] {step.label} on {step.backend}: {what} -> {run_dir}", flush=True)
    tracker.end(step, what, run_dir)


def write_report(out: Path, preset: str, sections: list[str], runs, searches: dict[str, Search],
                 data_lines: list[str]) -> Path:
    lines = header(machine_info(), preset, data_lines)
    spreads = section_spreads(runs, sections)
    for backend in runs:
        lines += [f"# {BACKEND_TITLES[backend]}", ""]
        for number, section in enumerate(SECTIONS.values(), start=1):
            if section in sections:
                part = RENDERERS[section](backend, runs[backend][section], out, searches.get(backend),
                                          spreads[section])
                lines += [section_heading(number, section), "", *part, "", "<br><br>", ""]
    if len(runs) == 2:
        lines += versus_part(runs, sections, out, spreads, _peak(out, runs))
    return write_text_atomic(out / REPORT_NAME, "\n".join(lines) + "\n")


def _peak(out: Path, backends) -> dict:
    """The machine's matmul peak for the share of peak, cached in OUT/peak.json (lab.reports.peak_share)."""
    print(f"the machine's matmul peak for the share of peak: {out / PEAK_FILE} (measured where missing: "
          "some 20 s)", flush=True)
    return machine_peak(out / PEAK_FILE, [FRAMEWORK_OF[b] for b in backends])


def _backends(text: str) -> list[str]:
    """--backends, in the report's order."""
    chosen = parse_backends(text)
    return [b for b in REPORT_ORDER if b in chosen]


def _check_data(data: dict, sections: list[str]) -> tuple[list[str], int]:
    """Load each dataset the sections need once, up front, so a missing one fails before any training:
    (the report's lines on the data used, the number of CIFAR classes)."""
    needed = {"mnist"} if "mnist" in sections else set()
    needed |= {"cifar"} if set(sections) - {"mnist"} else set()
    lines, cifar_classes = [], 10
    for part in (part for part in ("mnist", "cifar") if part in needed):
        settings = make_settings(data[part])
        splits = load_data(settings)
        side = settings.image_size
        size = f", resized to {side}x{side} ({settings.resize})" if side else ""
        lines.append(f"- {'Section 1' if part == 'mnist' else 'Sections 2-4'}: `{splits.name}` from "
                     f"{splits.source} ({len(splits.train):,} train, {len(splits.val):,} validation, "
                     f"{len(splits.test):,} test images, {splits.num_classes} classes{size})")
        cifar_classes = splits.num_classes if part == "cifar" else cifar_classes
    if "transfer" in sections:
        class_halves(cifar_classes)  # too few classes fails now too
    return lines, cifar_classes
