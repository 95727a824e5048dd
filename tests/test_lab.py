"""run_lab.py end to end on tiny data: every section, both backends, one complete report, work reused."""
import re

import numpy as np
import pytest

from lab.lab_main import main
from lab.lab_plan import parse_sections
from lab.errors import LabError


def _colour_tree(root, per_class=24, size=16):
    """A learnable RGB image tree: each class has its own dominant colour."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for part, count in (("train", per_class), ("test", per_class // 3)):
        for label, colour in enumerate([(200, 40, 40), (40, 200, 40), (40, 40, 200)]):
            folder = root / part / f"class{label}"
            folder.mkdir(parents=True)
            for i in range(count):
                noise = rng.integers(-40, 40, (size, size, 3))
                image = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
                Image.fromarray(image).save(folder / f"{i}.png")
    return root


def test_tiny_lab_end_to_end(tmp_path, lab_cache, capsys):
    data = _colour_tree(tmp_path / "colours")
    args = ["--preset", "quick", "--mnist-dataset", "digits", "--cifar-dataset", "folder", "--data-dir", str(data),
            "--out", str(tmp_path / "lab"), "--sections", "1,2,3"]
    assert main(args) == 0
    report = (tmp_path / "lab" / "lab-report.md").read_text()
    for heading in ("# Keras", "# PyTorch", "### 1.2. First CNN", "### 1.3. Comparison",
                    "## 2. Convolutional Neural Network on CIFAR10", "## 3. Data augmentation",
                    "# Keras against PyTorch Lightning"):
        assert heading in report
    assert "| X |" not in report and "TODO" not in report and "nan" not in report
    assert "`digits`" in report and "`folder`" in report
    for link in re.findall(r'<img src="([^"]+)"', report):
        assert (tmp_path / "lab" / link).is_file(), link
    capsys.readouterr()
    assert main(args) == 0  # the second time everything is reused
    assert "ran ->" not in capsys.readouterr().out


def test_sections_are_parsed_and_bad_ones_refused():
    assert parse_sections("3,1") == ["mnist", "augmentation"]
    assert parse_sections("all") == ["mnist", "cifar", "augmentation"]
    with pytest.raises(LabError, match="no section"):
        parse_sections("5")


def test_missing_data_fails_before_any_training(tmp_path, capsys):
    code = main(["--mnist-dataset", "folder", "--mnist-data-dir", str(tmp_path / "nothing"), "--sections", "1",
                 "--out", str(tmp_path / "lab")])
    assert code == 2
    assert "nothing" in capsys.readouterr().err
    assert not (tmp_path / "lab").exists()
