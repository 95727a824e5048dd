"""Settings are typed and grouped, and every command line is built one way.

- The groups (lab.config.groups.GROUPS) hold every field of ExperimentSettings exactly once, with its type, and
  `from_settings` copies each one.
- Every parameter named settings / s / base says its type (read from the source with `ast`).
- Every command's setting flags have the setting's type and choices (lab.config.flags builds them all); the root
  scripts import no other root script, and the console scripts point into the packages.
"""
from __future__ import annotations

import ast
import importlib
import re
from dataclasses import FrozenInstanceError, fields
from pathlib import Path

import pytest

from lab.comparisons import commands
from lab.config.flags import SETTING_NAMES, settings_parser
from lab.config.groups import GROUPS
from lab.config.settings import CHOICES, ExperimentSettings, arg_type
from lab.export import export_cli
from lab.pipeline import whole_lab
from lab.predict import predict_cli
from lab.tuning import tune_cli
from lab.tuning.space import NAMES as SPACE_NAMES

ROOT = Path(__file__).resolve().parents[1]
SETTINGS_PARAMETERS = ("settings", "s", "base")
# And the root scripts.
SCANNED = ("core", "lab", "datamodules", "lightning_modules", "keras_models", "callbacks", "bench", "scripts")


# ------------------------------------------------------------------------------------------------------ the groups

def _distinct_settings() -> ExperimentSettings:
    """ExperimentSettings whose every field differs from its default and from every other field."""
    values = {}
    for i, f in enumerate(fields(ExperimentSettings)):
        kind = arg_type(f.type)
        values[f.name] = (not f.default) if kind.__name__ == "bool" else kind(f"{1000 + i}") if kind is not str \
            else f"value-of-{f.name}"
    return ExperimentSettings(**values)  # not make_settings: the values need not make a sensible run


def test_the_groups_hold_every_setting_exactly_once():
    names = [f.name for group in GROUPS for f in fields(group)]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    assert not duplicated, f"settings in more than one group: {duplicated}"
    assert sorted(names) == sorted(SETTING_NAMES), (
        f"not in any group: {sorted(set(SETTING_NAMES) - set(names))}; "
        f"not a setting: {sorted(set(names) - set(SETTING_NAMES))}")


@pytest.mark.parametrize("group", GROUPS, ids=lambda g: g.__name__)
def test_from_settings_copies_every_field_of_its_group(group):
    settings = _distinct_settings()
    built = group.from_settings(settings)
    assert {f.name: getattr(built, f.name) for f in fields(group)} == \
        {f.name: getattr(settings, f.name) for f in fields(group)}


@pytest.mark.parametrize("group", GROUPS, ids=lambda g: g.__name__)
def test_a_group_has_the_types_of_the_settings_and_is_frozen(group):
    types = {f.name: f.type for f in fields(ExperimentSettings)}
    assert {f.name: f.type for f in fields(group)} == {f.name: types[f.name] for f in fields(group)}
    built = group.from_settings(ExperimentSettings())
    with pytest.raises(FrozenInstanceError):
        setattr(built, fields(group)[0].name, None)


# ------------------------------------------------------------------------------------------------ the annotations

def unannotated_settings(root: Path, folders=SCANNED, left=frozenset()) -> list[str]:
    """'file:line function(name)' for every function parameter named settings, s or base without a type, in the
    folders' .py files and the root scripts (lambdas cannot have annotations and are left out)."""
    paths = [p for folder in folders for p in sorted((root / folder).rglob("*.py"))] + sorted(root.glob("*.py"))
    found = []
    for path in paths:
        relative = path.relative_to(root).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or (relative, node.name) in left:
                continue
            arguments = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
            found += [f"{relative}:{node.lineno} {node.name}({a.arg})" for a in arguments
                      if a.arg in SETTINGS_PARAMETERS and a.annotation is None]
    return found


def test_every_settings_parameter_says_its_type():
    missing = unannotated_settings(ROOT)
    assert not missing, "parameters without a type:\n" + "\n".join(missing)


def test_the_annotation_scan_finds_a_parameter_without_a_type(tmp_path):
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab" / "a.py").write_text("def f(settings: 'ExperimentSettings', s, n):\n    g = lambda s: s\n"
                                           "class C:\n    def __init__(self, base): pass\n")
    (tmp_path / "tool.py").write_text("async def main(base: int, *, settings): pass\n")
    assert unannotated_settings(tmp_path) == ["lab/a.py:1 f(s)", "lab/a.py:4 __init__(base)",
                                              "tool.py:1 main(settings)"]
    assert unannotated_settings(tmp_path, left={("lab/a.py", "f")}) == ["lab/a.py:4 __init__(base)",
                                                                        "tool.py:1 main(settings)"]


# ------------------------------------------------------------------------------------------------ the command lines

PARSERS = {"train_keras.py": lambda: settings_parser("train_keras.py", ""),
           "tune_keras.py": lambda: tune_cli.build_parser("tune_keras.py", "keras"),
           "augment_compare.py": commands.augment_parser, "transfer_compare.py": commands.transfer_parser,
           "run_lab.py": whole_lab.build_parser}


@pytest.mark.parametrize("command", list(PARSERS))
def test_a_setting_flag_has_the_settings_type_and_choices_in_every_command(command):
    known = {f.name: f for f in fields(ExperimentSettings)}
    own = SPACE_NAMES if command == "tune_keras.py" else ()  # the search space's flags are lists of values
    checked = 0
    for action in PARSERS[command]()._actions:
        if action.dest in known and action.dest not in own and action.option_strings:
            f = known[action.dest]
            assert action.option_strings == ["--" + f.name.replace("_", "-")], command
            assert (action.type, action.choices) == (arg_type(f.type), CHOICES.get(f.name)), (command, f.name)
            checked += 1
    assert checked >= 5, command


@pytest.mark.parametrize("command", [*PARSERS, "compare.py", "predict.py", "export.py"])
def test_no_flag_says_its_default_twice(command):
    parser = {"compare.py": commands.compare_parser, "predict.py": predict_cli.parser,
              "export.py": export_cli.parser}.get(command) or PARSERS[command]
    doubled = [a.option_strings[0] for a in parser()._actions if a.help and a.help.count("(default:") > 1]
    assert doubled == [], command


def test_the_root_scripts_import_no_other_root_script():
    scripts = {path.stem for path in ROOT.glob("*.py")}
    for path in ROOT.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom) and node.module}
        assert not imported & scripts, path.name
        assert not [node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))], \
            f"{path.name} defines its own code; it belongs in a package"


def test_the_console_scripts_point_into_the_packages():
    section = (ROOT / "pyproject.toml").read_text().split("[project.scripts]\n")[1].split("\n[")[0]
    scripts = dict(re.findall(r'^([\w-]+) = "([^"]+)"$', section, re.MULTILINE))  # tomllib: Python 3.11 on
    assert len(scripts) == len(list(ROOT.glob("*.py")))  # one console script for each root script
    for command, target in scripts.items():
        module, _, name = target.partition(":")
        assert "." in module, f"{command} points at the root script {module}"
        assert callable(getattr(importlib.import_module(module), name)), command
