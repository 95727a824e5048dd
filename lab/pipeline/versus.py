"""The report's side-by-side part: every experiment, Keras against PyTorch Lightning."""
from __future__ import annotations

from pathlib import Path

from lab.pipeline.plan import TITLES
from lab.pipeline.writeup import curves_figure, rel
from lab.records.results import achieved_gflops, load_results
from lab.reports.commentary import Spread, versus_sentence
from lab.reports.comparison import run_row
from lab.reports.peak_share import peak_lines, share_of_peak, share_text
from lab.reports.plots import profile_figure, save_png
from lab.reports.report import flops_text, markdown_table

COLUMNS = ("Experiment", "Keras accuracy", "Lightning accuracy", "Keras time", "Lightning time",
           "Time ratio (Keras / Lightning)", "Params (Keras / Lightning)", "FLOPs per image (Keras / Lightning)",
           "Training GFLOP/s (Keras / Lightning)", "Share of peak (Keras / Lightning)")
# results.json "inference" (lab.records.inference_timing), beside the training time's columns
INFERENCE_COLUMNS = ("Inference ms per image, batch 1 (Keras / Lightning)",
                     "Inference images/s, batch 256 (Keras / Lightning)")


def versus_part(runs: dict, sections: list[str], out: Path, spreads: dict[str, Spread] | None = None,
                peak: dict | None = None) -> list[str]:
    """spreads: each section's run-to-run spread (lab.pipeline.writeup.section_spreads), against which its rows'
    accuracy differences are weighed; a section without one says its spread is unknown. peak:
    lab.reports.peak_share.machine_peak's, for the share of peak (None: not measured)."""
    lines = ["# Keras against PyTorch Lightning", "",
             "Every experiment above on both backends: same data split, architecture, hyperparameters and seed.",
             "", *(peak_lines(peak) if peak else [])]
    for section in sections:
        keys = list(runs["keras"][section])
        spread = (spreads or {}).get(section)
        pairs = {key: _rows(runs["keras"][section][key], runs["lightning"][section][key], peak) for key in keys}
        lines += [f"## {TITLES[section]}", "", markdown_table(COLUMNS, [_row(key, *pairs[key]) for key in keys]), ""]
        rows = [_row(key, *pairs[key]) + inference_cells(runs, section, key) for key in keys]
        lines += [f"## {TITLES[section]}", "", markdown_table(COLUMNS + INFERENCE_COLUMNS, rows), ""]
        for key in keys:
            keras, lightning = pairs[key]
            pair = [runs["keras"][section][key], runs["lightning"][section][key]]
            lines += [f"{key}: {versus_sentence('Keras', keras, 'PyTorch Lightning', lightning, spread)}", "",
                      curves_figure(pair, out, f"versus-{key}"), "", *profile_part(pair, out, key)]
    return lines


def inference_cells(runs: dict, section: str, key: str) -> list[str]:
    """The two runs' inference speeds; 'not measured' for a run that has none (made before it was measured, with
    --profile false, or on cores shared with other training)."""
    speeds = [load_results(runs[backend][section][key]).get("inference") or {} for backend in ("keras", "lightning")]

    def pair(name: str, text) -> str:
        cells = ["not measured" if s.get(name) is None else text(s[name]) for s in speeds]
        return "not measured" if cells == ["not measured"] * 2 else " / ".join(cells)

    return [pair("ms_per_image_b1", lambda ms: f"{ms:.3g}"), pair("images_per_s_b256", lambda n: f"{n:,.0f}")]


def profile_part(pair: list[Path], out: Path, key: str) -> list[str]:
    """The two runs' steady steps side by side (results.json "profile"): a sentence and a stacked-bar figure;
    nothing where a run has no profile."""
    profiles = [(name, load_results(d).get("profile")) for name, d in zip(("Keras", "Lightning"), pair)]
    if any(profile is None for _, profile in profiles):
        return []
    path = out / "comparisons" / f"profile-{key}.png"
    save_png(profile_figure(profiles), path)
    return [profile_sentence(profiles), "", f'<img src="{rel(path, out)}" height="160" />', ""]


def profile_sentence(profiles: list[tuple[str, dict]]) -> str:
    machines = [p["machine"] for _, p in profiles]
    where = f"on {machines[0]}" if len(set(machines)) == 1 else ", ".join(
        f"{name} on {m}" for (name, _), m in zip(profiles, machines))
    parts = "; ".join(f"{name} {p['step_ms']:.2f} ms: compute {p['compute_ms']:.2f}, data {p['data_ms']:.2f}, "
                      f"the framework's loop {p['overhead_ms']:.2f}" for name, p in profiles)
    return (f"A steady training step {where}, measured after training over {profiles[0][1]['steps']} steps of the "
            f"last epoch, the compute and the data pipeline timed apart: {parts} (a negative loop share: the parts "
            "took longer apart than in the loop, from batches prepared while the step computed or a busy machine; "
            "a profile on a GPU differs).")


def _rows(keras_dir: Path, lightning_dir: Path, peak: dict | None) -> tuple[dict, dict]:
    return tuple(_row_of(d, load_results(d), peak) for d in (keras_dir, lightning_dir))


def _row_of(run_dir: Path, results: dict, peak: dict | None) -> dict:
    """run_row's figures and the FLOPs, which runs made before they were recorded lack, and the share of peak."""
    return {**run_row(run_dir, results), "flops": results.get("flops_per_image"), "gflops": achieved_gflops(results),
            "share": share_of_peak(results, peak)}


def _row(key: str, k: dict, t: dict) -> list:
    ratio = k["time_s"] / t["time_s"] if t["time_s"] else float("nan")
    return [key, f"{k['accuracy']:.2f}%", f"{t['accuracy']:.2f}%", f"{k['time_s']:.2f}s", f"{t['time_s']:.2f}s",
            f"{ratio:.2f}x", f"{k['params']:,} / {t['params']:,}", _pair(k["flops"], t["flops"], flops_text),
            _pair(k["gflops"], t["gflops"], lambda g: f"{g:,.3g}"), " / ".join(share_text(r["share"]) for r in (k, t))]


def _pair(keras, lightning, text) -> str:
    """'a / b', or 'a' when both are the same; runs made before the figure was recorded say so."""
    cells = ["not recorded" if value is None else text(value) for value in (keras, lightning)]
    return cells[0] if keras == lightning and keras is not None else " / ".join(cells)
