"""Comparison across runs: files, table contents, refusals, and the CLI's exit code."""
from __future__ import annotations

import csv
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_analysis import fake_history, fake_results, table_rows

import compare
from conftest import call_main
from core.errors import LabError
from lab.records.results import save_results
from lab.reports.comparison import MD_COLUMNS, compare_runs, default_out_dir
from lab.reports.plots import png_to_array


def make_run(root: Path, backend: str, version: int = 0, **overrides) -> Path:
    results = fake_results(**overrides)
    results["backend"] = backend
    run_dir = root / results["experiment"] / backend / f"version_{version}"
    save_results(run_dir, results)
    return run_dir


@pytest.fixture
def two_runs(tmp_path) -> Path:
    root = tmp_path / "runs"
    make_run(root, "lightning")
    make_run(root, "keras", test={"loss": 0.2, "accuracy": 0.9821}, timing={"total_s": 61.0}, epochs=6,
             params={"total": 1234567, "trainable": 1234567}, history=fake_history(6, scale=2.0))
    (root / "notes").mkdir()  # a folder without results.json is simply not a run
    return root


def test_compare_writes_table_csv_and_curves(two_runs):
    written = compare_runs([two_runs], two_runs)
    assert written["markdown"] == two_runs / "comparison.md"
    rows = table_rows(written["markdown"].read_text(), MD_COLUMNS)
    assert [r[:8] for r in rows] == [
        ["first_cnn", "keras", "98.21%", "61.00s", "6", "1,234,567", "digits", "first_cnn-digits"],
        ["first_cnn", "lightning", "92.43%", "622.84s", "4", "12,345", "digits", "first_cnn-digits"]]
    assert rows[0][8] == "[version_0](first_cnn-digits/keras/version_0)"
    with written["csv"].open() as f:
        lines = list(csv.DictReader(f))
    assert [(r["Backend"], r["Accuracy (%)"], r["Time (s)"], r["Params"]) for r in lines] == [
        ("keras", "98.21", "61.00", "1234567"), ("lightning", "92.43", "622.84", "12345")]
    image = png_to_array(written["curves"])
    assert written["curves"].name == "comparison_val_curves.png" and image.std() > 0


def test_explicit_run_folders_and_duplicates(two_runs, tmp_path):
    keras = two_runs / "first_cnn-digits" / "keras" / "version_0"
    written = compare_runs([keras, two_runs], tmp_path / "out")
    assert written["runs"][0] == keras and len(written["runs"]) == 2


def test_mixed_datasets_refused_unless_allowed(two_runs, tmp_path):
    make_run(two_runs, "keras", dataset="mnist")
    with pytest.raises(LabError, match=r"different datasets \(digits: .*; mnist: .*first_cnn-mnist"):
        compare_runs([two_runs], tmp_path)
    written = compare_runs([two_runs], tmp_path, allow_mixed_datasets=True)
    text = written["markdown"].read_text()
    assert "## Dataset: digits" in text and "## Dataset: mnist" in text
    assert [r["Dataset"] for r in csv.DictReader(written["csv"].open())] == ["digits", "digits", "mnist"]


def test_unreadable_runs_refused(two_runs, tmp_path):
    bad = two_runs / "broken" / "lightning" / "version_0"
    bad.mkdir(parents=True)
    (bad / "results.json").write_text("{not json")
    with pytest.raises(LabError, match="broken/lightning/version_0/results.json is not valid JSON"):
        compare_runs([two_runs], tmp_path)
    (bad / "results.json").write_text('{"schema": 1}')
    with pytest.raises(LabError, match="lacks the fields"):
        compare_runs([bad], tmp_path)
    save_results(bad, fake_results(test={"loss": 0.1}))
    with pytest.raises(LabError, match=r"version_0/results.json has an unexpected layout .*accuracy"):
        compare_runs([bad], tmp_path)
    with pytest.raises(LabError, match="notes is not a run folder"):
        compare_runs([two_runs / "notes"], tmp_path)
    with pytest.raises(LabError, match="does not exist"):
        compare_runs([tmp_path / "nowhere"], tmp_path)


def test_default_out_dir(two_runs, tmp_path):
    run = two_runs / "first_cnn-digits" / "keras" / "version_0"
    assert default_out_dir([two_runs]) == two_runs
    assert default_out_dir([run], "cmp", cwd=tmp_path) == tmp_path / "runs" / "comparisons" / "cmp"
    assert default_out_dir([two_runs, run], "cmp", cwd=tmp_path) == tmp_path / "runs" / "comparisons" / "cmp"


def test_cli(two_runs, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = call_main(compare.main, [str(two_runs)], capsys)
    assert code == 0, err
    assert str(two_runs / "comparison.md") in out and (two_runs / "comparison.csv").is_file()

    run = two_runs / "first_cnn-digits" / "keras" / "version_0"
    code, _, _ = call_main(compare.main, [str(run), "--name", "mine"], capsys)
    assert code == 0 and (tmp_path / "runs" / "comparisons" / "mine" / "comparison.md").is_file()

    make_run(two_runs, "keras", dataset="mnist")
    for args in ([two_runs], [tmp_path / "nowhere"]):
        code, _, err = call_main(compare.main, [str(a) for a in args], capsys)
        assert code == 2 and err.startswith("error: ")
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_run_each_trains_one_backend_at_a_time_pytorch_first(monkeypatch):
    from lab.run import reuse

    calls = []
    monkeypatch.setattr(reuse, "ensure_run", lambda b, s, rerun: calls.append((b, s.experiment, rerun))
                        or (Path(s.experiment, b), "ran"))
    plain, aug = (SimpleNamespace(experiment=name) for name in ("plain", "aug"))
    run_dirs = reuse.run_each(["keras", "lightning"], [plain, aug], rerun=True)
    assert calls == [("lightning", "plain", True), ("lightning", "aug", True), ("keras", "plain", True),
                     ("keras", "aug", True)]
    assert run_dirs == [Path("plain/keras"), Path("plain/lightning"), Path("aug/keras"), Path("aug/lightning")]
