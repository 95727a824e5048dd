"""run_lab.py: every section of the lab, on both backends, into one report; finished work is reused.

The lab is a graph of jobs (lab.pipeline.jobs), each run in a process of its own: on this machine's devices
(lab.pipeline.pool, --devices N), one job at a time with --step ID (lab.pipeline.step), or written out for a
cluster's scheduler with --plan FILE (lab.pipeline.plan_file). Once every job has finished, the report."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from core.cli import run_command
from core.errors import LabError
from core.io import write_text_atomic
from lab.config.data import load_data
from lab.config.devices import ONE_DEVICE, DeviceSpec, asks_for_cpu, lab_devices, requested_count
from lab.config.flags import LabArgumentParser, add_progress_flag, add_setting_flags
from lab.config.machine import gpu_names, machine_info
from lab.config.settings import HELP, make_settings
from lab.pipeline.estimates import DataSize, job_estimates
from lab.pipeline.jobs import Job, Lab, build_jobs, find_job
from lab.pipeline.plan import PRESETS, SECTIONS, class_halves, parse_sections
from lab.pipeline.plan_file import (
    check_plan_path,
    check_step_lab,
    plan_document,
    plan_totals,
    record_plan_lab,
    write_plan,
)
from lab.pipeline.pool import Pool
from lab.pipeline.sections import RENDERERS
from lab.pipeline.step import finished, run_step
from lab.pipeline.tuned import Search
from lab.pipeline.versus import versus_part
from lab.pipeline.writeup import BACKEND_TITLES, header, section_heading, section_spreads
from lab.progress import progress
from lab.reports.peak_share import FRAMEWORK_OF, PEAK_FILE, machine_peak
from lab.run.backend import parse_backends
from lab.tuning.search import SearchOptions

REPORT_NAME = "lab-report.md"
REPORT_ORDER = ("keras", "lightning")
EVERY_RUN = ("accelerator", "gpus", "devices", "precision", "test_weights", "bn_recalibration")  # flags for every run
LAB_ONLY = {"--plan": 1, "--overwrite": 0, "--estimates-from": 1}  # flags of the lab that its steps do not take


def build_parser() -> argparse.ArgumentParser:
    p = LabArgumentParser(prog="run_lab.py", description="Run the lab's sections on Keras and PyTorch Lightning "
                          "and write one Markdown report (OUT/lab-report.md). Finished experiments are reused.")
    p.add_argument("--preset", choices=sorted(PRESETS), default="quick",
                   help="quick: few epochs and small searches, minutes on a CPU; full: the lab's settings; tiny: "
                        "for tests and smoke checks only")
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
    add_setting_flags(p, EVERY_RUN, parse_defaults=True, help={
        "accelerator": "auto, cpu or gpu, for both backends",
        "gpus": "number of GPUs: one run on each at a time; 0 means the CPU",
        "devices": "the devices the lab trains on, one run on each at a time, each run in a process of its own: a "
                   "count (on the CPU, the runs divide the cores) or GPU indices like 0,2 (default: one)",
        "precision": f"every run, on both backends: {HELP['precision'].removeprefix('numeric precision: ')}",
        "test_weights": f"every run: {HELP['test_weights']}",
        "bn_recalibration": f"every run: {HELP['bn_recalibration']}"})
    p.add_argument("--plan", metavar="FILE", type=Path,
                   help="write the lab's jobs as JSON (and FILE.stageK.txt, one command per line, for xargs -P N) "
                        "without training anything, to run them on a cluster: docs/scale-out.md")
    p.add_argument("--overwrite", action="store_true", help="let --plan replace an existing file")
    p.add_argument("--estimates-from", metavar="FOLDER", action="append", default=[],
                   help="also estimate the jobs' times from the finished runs of these lab folders, scaled by work "
                        "(repeatable or comma-separated; --out is always read): docs/scale-out.md")
    p.add_argument("--worker-silence", type=float, metavar="SECONDS",
                   help="section 1.4's search on several devices: a worker silent this long loses its trial to "
                        f"another worker (default: {SearchOptions().worker_silence:g})")
    p.add_argument("--step", metavar="ID",
                   help="run one job of the lab here, e.g. lightning.first_cnn (the IDs: --plan), then exit")
    add_progress_flag(p)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    code, result = run_command(lambda: _with_progress(args, argv),
                               "run the same command again to continue where the lab stopped.")
    if isinstance(result, list):  # jobs failed; the others finished
        print("\n" + "\n".join(result) + "\nRun the same command again to continue.", file=sys.stderr)
        return 1
    if result is not None:
        print(f"\nlab report: {result}")
    return code


def _with_progress(args, argv: list[str]) -> Path | list[str] | None:
    with progress(args.progress):
        return run_lab(args, argv)


def run_lab(args, argv: list[str]) -> Path | list[str] | None:
    """The report's path; the failed jobs' sentences; or None after --plan or --step."""
    if args.plan and args.step:
        raise LabError("--plan writes the lab's jobs and --step runs one of them; give one of the two.")
    if args.plan:
        check_plan_path(args.plan, args.overwrite)
    others = _estimate_folders(args.estimates_from)
    devices = None if args.plan or args.step else \
        lab_devices(_device_spec(args), _visible_gpus(), os.cpu_count() or 1)
    lab, data_lines = make_lab(args)
    jobs = build_jobs(lab)
    if args.step:
        job = find_job(jobs, args.step)
        check_step_lab(lab)
        if asks_for_cpu(_device_spec(args)):  # as the pool places a CPU lab's runs, wherever the step runs
            os.environ["CUDA_VISIBLE_DEVICES"] = ""
        run_step(lab, jobs, job)
        return None
    lab_argv = _without(argv, LAB_ONLY)
    if args.plan:
        workers = requested_count(_device_spec(args))  # a search's workers: the lab's devices
        guess = job_estimates(lab, jobs, [lab.out, *others])
        for path in [*write_plan(args.plan, plan_document(jobs, lab_argv, guess, workers)), record_plan_lab(lab)]:
            print(f"wrote {path}")
        print("estimated time:\n" + "\n".join(f"  {line}" for line in plan_totals(jobs, guess, workers)))
        return None
    record_plan_lab(lab)  # its children's --step check this lab, as a plan's steps check the plan's
    failures = Pool(lab, jobs, devices, lab_argv, others=others).run()
    if failures:
        return failures
    runs, searches = collect(lab, jobs)
    return write_report(lab.out, lab.preset["name"], lab.sections, runs, searches, data_lines)


def make_lab(args) -> tuple[Lab, list[str]]:
    """The lab the flags ask for, its data checked (the report's lines on the data)."""
    sections, backends = parse_sections(args.sections), _backends(args.backends)
    preset = {**PRESETS[args.preset], "name": args.preset}
    data = {"mnist": {"dataset": args.mnist_dataset, "data_dir": args.mnist_data_dir or args.data_dir},
            "cifar": {"dataset": args.cifar_dataset, "data_dir": args.cifar_data_dir or args.data_dir,
                      **({"image_size": args.image_size, "resize": args.resize} if args.image_size else {})}}
    common = {"out": args.out, "seed": args.seed, "precision": args.precision, "test_weights": args.test_weights,
              "bn_recalibration": args.bn_recalibration, **ONE_DEVICE}
    make_settings(common)  # --out and the rest checked before anything runs
    silence = args.worker_silence
    if silence is not None and not silence > 0:
        raise LabError(f"--worker-silence must be a positive number of seconds, got {silence:g}.")
    data_lines, cifar_classes, sizes = _check_data(data, sections)
    return Lab(backends, sections, preset, data, cifar_classes, args.spread_seed, common, args.rerun, silence,
               sizes), data_lines


def collect(lab: Lab, jobs: list[Job]) -> tuple[dict, dict[str, Search]]:
    """The finished work for the report: backend -> section -> experiment key -> run folder, and the searches."""
    runs: dict[str, dict[str, dict[str, Path]]] = {b: {s: {} for s in lab.sections} for b in lab.backends}
    searches: dict[str, Search] = {}
    for job in jobs:
        done = finished(lab, jobs, job)
        if done is None:
            raise LabError(f"{job.id} has not finished; run the same command again to continue the lab.")
        if isinstance(done, Search):
            searches[job.backend] = done
            continue
        for section in job.sections:
            runs[job.backend][section][job.key] = done
    return runs, searches


def _device_spec(args) -> DeviceSpec:
    return DeviceSpec.from_settings(make_settings({name: getattr(args, name) for name in EVERY_RUN}))


def _visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES entries."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [part.strip() for part in visible.split(",") if part.strip()]
    return [str(i) for i in range(len(gpu_names()))]


def _estimate_folders(given: list[str]) -> list[Path]:
    """--estimates-from's folders; LabError for one that is not a folder."""
    folders = [Path(part.strip()) for text in given for part in text.split(",") if part.strip()]
    for folder in folders:
        if not folder.is_dir():
            raise LabError(f"--estimates-from {folder} is not a folder; give the --out folder of an earlier lab.")
    return folders


def _without(argv: list[str], flags: dict[str, int]) -> list[str]:
    """argv less the flags (and their values; also as --flag=value)."""
    kept, skip = [], 0
    for item in argv:
        if skip:
            skip -= 1
        elif item in flags:
            skip = flags[item]
        elif item.split("=", 1)[0] not in flags:
            kept.append(item)
    return kept


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


def _check_data(data: dict, sections: list[str]) -> tuple[list[str], int, dict[str, DataSize]]:
    """Load each dataset the sections need once, up front, so a missing one fails before any training:
    (the report's lines on the data used, the number of CIFAR classes, each dataset's size for the estimates)."""
    needed = {"mnist"} if "mnist" in sections else set()
    needed |= {"cifar"} if set(sections) - {"mnist"} else set()
    lines, cifar_classes, sizes = [], 10, {}
    for part in (part for part in ("mnist", "cifar") if part in needed):
        settings = make_settings(data[part])
        splits = load_data(settings)
        side = settings.image_size
        size = f", resized to {side}x{side} ({settings.resize})" if side else ""
        lines.append(f"- {'Section 1' if part == 'mnist' else 'Sections 2-4'}: `{splits.name}` from "
                     f"{splits.source} ({len(splits.train):,} train, {len(splits.val):,} validation, "
                     f"{len(splits.test):,} test images, {splits.num_classes} classes{size})")
        cifar_classes = splits.num_classes if part == "cifar" else cifar_classes
        counts = np.bincount(splits.train.labels, minlength=splits.num_classes)
        sizes[part] = DataSize(len(splits.train), splits.input_shape, splits.class_names,
                               tuple(int(c) for c in counts), settings.dataset, settings.image_size)
    if "transfer" in sections:
        class_halves(cifar_classes)  # too few classes fails now too
    return lines, cifar_classes, sizes
