"""core/private_api.py against the source and the installed libraries.

The source is read with `ast`, not imported: a use of a private name of a framework is
- an import of a third-party module path with a `_` component, or under keras.src, keras_tuner.src or
  tensorflow.python (`from torch.utils._triton import has_triton`);
- an attribute chain from such a module's name (`nn.modules.batchnorm._BatchNorm`, `keras.src.backend...`);
- an attribute `._x`, a `def _x` or a string "_x" (getattr, setattr, a list of names) where `_x` is listed, or
  is not the project's own: defined nowhere in the source as a def, class, variable, argument or `self._x = `.
Dunder names never count. The project's own namesake of a framework's name is left to the import check below
(`test_overrides_of_private_names_are_listed`), which looks at the classes themselves.
"""
from __future__ import annotations

import ast
import functools
import importlib
import importlib.metadata
import inspect
import pkgutil
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.frameworks import _MODULES as LAZY_FRAMEWORKS
from core.private_api import PRIVATE_NAMES, Private, entries

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("core", "lab", "datamodules", "lightning_modules", "keras_models", "callbacks", "bench", "scripts")
PACKAGES = ("core", "lab", "datamodules", "lightning_modules", "keras_models", "callbacks")  # imported below
FIRST_PARTY = {*FOLDERS, *(p.stem for p in ROOT.glob("*.py")), "tests", "conftest"}
PRIVATE_TREES = ("keras.src", "keras_tuner.src", "tensorflow.python")  # private without an underscore
DOCUMENTED = {"_asdict", "_replace", "_fields", "_field_defaults", "_make", "_exit", "_getframe"}  # public API
REGISTRY = "core/private_api.py"
_PRIVATE = re.compile(r"_(?!_)\w+")


@dataclass(frozen=True)
class Use:
    file: str
    line: int
    name: str  # a dotted path into a third-party module, or a bare name: an attribute of an object of unknown type


def is_private(name: str) -> bool:
    return _PRIVATE.fullmatch(name) is not None


def third_party(module: str) -> bool:
    top = module.split(".")[0]
    return top not in FIRST_PARTY and top not in sys.stdlib_module_names


def touches_private(path: str) -> bool:
    return (any(is_private(part) for part in path.split("."))
            or any(path == tree or path.startswith(tree + ".") for tree in PRIVATE_TREES))


def _chain(node: ast.Attribute) -> list[str] | None:
    """a.b.c as ["a", "b", "c"]; None when the chain starts with anything but a name (a call, a subscript)."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return [node.id, *reversed(parts)] if isinstance(node, ast.Name) else None


def _bound_in(function) -> set[str]:
    names = {arg.arg for arg in ast.walk(function.args) if isinstance(arg, ast.arg)}
    return names | {n.id for n in ast.walk(function) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}


class _Scanner(ast.NodeVisitor):
    def __init__(self, file: str):
        self.file, self.aliases, self.uses, self.own = file, {}, [], set()

    def use(self, node: ast.AST, name: str) -> None:
        self.uses.append(Use(self.file, node.lineno, name))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if third_party(alias.name):
                local = alias.asname or alias.name.split(".")[0]
                self.aliases[local] = alias.name if alias.asname else local
                if touches_private(alias.name):
                    self.use(node, alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        for alias in node.names:
            local = alias.asname or alias.name
            if module == "core.frameworks" and alias.name in LAZY_FRAMEWORKS:
                self.aliases[local] = LAZY_FRAMEWORKS[alias.name]
            elif node.level == 0 and third_party(module):
                self.aliases[local] = f"{module}.{alias.name}"
                if touches_private(self.aliases[local]):
                    self.use(node, self.aliases[local])

    def visit_Attribute(self, node: ast.Attribute) -> None:
        chain = _chain(node)
        if chain and chain[0] in self.aliases:  # a path into a third-party module: seen whole, once
            path = ".".join([self.aliases[chain[0]], *chain[1:]])
            if touches_private(path):
                self.use(node, path)
            return
        if is_private(node.attr):
            self.use(node, node.attr)
            owner = node.value.id if isinstance(node.value, ast.Name) else None
            if isinstance(node.ctx, ast.Store) and owner in ("self", "cls"):
                self.own.add(node.attr)
        self.generic_visit(node)

    def visit_FunctionDef(self, node) -> None:
        if is_private(node.name):
            self.own.add(node.name)
            self.use(node, node.name)  # counts only where listed: an override of a framework's method
        outer = self.aliases  # a function's imports stay in it, and its arguments and variables hide outer names
        self.aliases = {name: path for name, path in outer.items() if name not in _bound_in(node)}
        self.generic_visit(node)
        self.aliases = outer

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        if is_private(node.name):
            self.own.add(node.name)
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Store) and is_private(node.id):
            self.own.add(node.id)

    def visit_arg(self, node: ast.arg) -> None:
        if is_private(node.arg):
            self.own.add(node.arg)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str) and is_private(node.value):
            self.use(node, node.value)


def scan(sources: dict[str, str]) -> tuple[list[Use], set[str]]:
    """Every use of a possibly private name in the sources (file -> text), and the project's own private names."""
    uses, own = [], set()
    for file, text in sources.items():
        scanner = _Scanner(file)
        scanner.visit(ast.parse(text, file))
        uses += scanner.uses
        own |= scanner.own
    return uses, own


def _covers(entry: Private, use: Use) -> bool:
    if "." not in use.name:
        return entry.name == use.name
    return use.name == entry.path or use.name.startswith(entry.path + ".") or entry.path.startswith(use.name + ".")


def check(uses: list[Use], own: set[str], listed: list[Private]) -> tuple[list[str], set[str]]:
    """One sentence for each use that the list does not account for, and the paths of the entries used."""
    problems, used = [], set()
    for use in uses:
        found = [entry for entry in listed if _covers(entry, use)]
        here = [entry.path for entry in found if use.file in entry.where]
        used.update(here)
        if here or ("." not in use.name and (use.name in own or use.name in DOCUMENTED)):
            continue
        if found:
            problems.append(f"{use.file}:{use.line} uses {use.name}, which {REGISTRY} lists for "
                            f"{', '.join(found[0].where)} only: add {use.file} to its `where`")
        else:
            problems.append(f"{use.file}:{use.line} uses {use.name}, a framework's private name not listed in "
                            f"{REGISTRY}: list it there (path, where, why) or use a public name")
    return problems, used


def project_sources() -> dict[str, str]:
    files = [p for folder in FOLDERS for p in sorted((ROOT / folder).rglob("*.py"))] + sorted(ROOT.glob("*.py"))
    return {p.relative_to(ROOT).as_posix(): p.read_text() for p in files}


def listed() -> list[Private]:
    return [entry for _, entry in entries()]


def test_every_private_name_in_the_source_is_listed_where_it_is_used():
    problems, _ = check(*scan(project_sources()), listed())
    assert not problems, "\n".join(problems)


def test_every_listed_name_is_still_used():
    _, used = check(*scan(project_sources()), listed())
    stale = [f"{REGISTRY} lists {e.path} for {', '.join(e.where)}, which no longer use it: remove it or its files"
             for e in listed() if e.path not in used]
    assert not stale, "\n".join(stale)


SNIPPET = '''\
import torch
from keras.src.utils import file_utils
from core.frameworks import kt


class Mine:
    def __init__(self):
        self._count = 0

    def _step(self):
        return self._count + torch.nn.Linear(1, 1)._new_private


def f(oracle):
    setattr(oracle, "_also_new", oracle.__dict__)
    return oracle._retry_queue, torch._dynamo.config, kt.src.engine, Mine()._step(), file_utils
'''


def test_a_new_private_name_fails_with_its_file_and_line():
    def line(text):
        return next(i for i, row in enumerate(SNIPPET.splitlines(), 1) if text in row)

    problems, _ = check(*scan({"snippet.py": SNIPPET}), listed())
    named = {(int(p.split(" ")[0].split(":")[1]), p.split(" ")[2].rstrip(",")) for p in problems}
    assert named == {(line("keras.src"), "keras.src.utils.file_utils"), (line("_new_private"), "_new_private"),
                     (line("_also_new"), "_also_new"), (line("_retry_queue"), "_retry_queue"),
                     (line("_dynamo"), "torch._dynamo.config"), (line("kt.src"), "keras_tuner.src.engine")}
    assert all(p.startswith("snippet.py:") for p in problems)
    listed_elsewhere = next(p for p in problems if "_retry_queue" in p)
    assert "add snippet.py to its `where`" in listed_elsewhere
    # the project's own (_count, _step), dunders and public names pass; so does a listed name in its own files
    engine_use = Use("lab/tuning/engine.py", 1, "_retry_queue")
    assert check([engine_use], set(), listed()) == ([], {"keras_tuner.src.engine.oracle.Oracle._retry_queue"})


def test_an_unused_entry_is_reported():
    stale = Private("torch._gone", ("lightning_modules/compiling.py",), "nothing")
    _, used = check(*scan(project_sources()), [*listed(), stale])
    assert stale.path not in used and "torch.utils._triton.has_triton" in used


# --- the installed libraries -----------------------------------------------------------------------------------

@functools.cache
def _source(cls) -> str:
    try:
        return inspect.getsource(cls)
    except (OSError, TypeError):
        return ""


def _assigned(cls, name: str) -> bool:
    """Whether cls (or a base) sets self.<name>: an attribute made in __init__ is not on the class."""
    pattern = re.compile(rf"\bself\.{re.escape(name)}\s*(:[^=\n]*)?=(?!=)")
    return any(pattern.search(_source(c)) for c in cls.__mro__ if c is not object)


def exists(path: str) -> bool:
    parts = path.split(".")
    for size in range(len(parts), 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:size]))
            break
        except ImportError:
            continue
    else:
        return False
    rest = parts[size:]
    for i, part in enumerate(rest):
        if not hasattr(found, part):
            return i == len(rest) - 1 and inspect.isclass(found) and _assigned(found, part)
        found = getattr(found, part)
    return True


@pytest.fixture(scope="module")
def frameworks():
    from core import frameworks

    frameworks.kt  # torch before TensorFlow, Keras on TensorFlow (core/frameworks.py)


def test_every_listed_name_still_exists(frameworks):
    gone = [f"{library} {importlib.metadata.version(library)} no longer has {entry.path}, used by "
            f"{', '.join(entry.where)} ({entry.why}); see docs/dependencies.md"
            for library, entry in entries() if not exists(entry.path)]
    assert not gone, "\n".join(gone)


def test_the_existence_check_can_fail(frameworks):
    assert exists("keras_tuner.src.engine.oracle.Oracle._retry_queue")  # set in __init__, found in its source
    assert not exists("keras_tuner.src.engine.oracle.Oracle._no_such_queue")
    assert not exists("torch.utils._no_such_module.has_triton")


def test_each_entry_belongs_to_its_library():
    owners = importlib.metadata.packages_distributions()
    wrong = [f"{entry.path} is not in {library}" for library, entry in entries()
             if library not in owners.get(entry.path.split(".")[0], [])]
    assert not wrong and len(PRIVATE_NAMES) == len({*PRIVATE_NAMES}), wrong


def _project_classes():
    for package in PACKAGES:
        names = [package] + [m.name for m in pkgutil.walk_packages([str(ROOT / package)], f"{package}.")]
        for name in names:
            module = importlib.import_module(name)
            yield from (c for c in vars(module).values() if inspect.isclass(c) and c.__module__ == name)


def _own_private_names(cls) -> set[str]:
    """The private names the class's own source defines: defs, class attributes, self._x (not ABCMeta's _abc_impl)."""
    source = _source(cls)
    names = {n for n in vars(cls) if is_private(n) and re.search(rf"\b{n}\b", source)}
    return names | set(re.findall(r"\bself\.(_(?!_)\w+)\s*(?::[^=\n]*)?=(?!=)", source))


def test_overrides_of_private_names_are_listed(frameworks):
    """A method, class attribute or `self._x` of the project's classes that a framework base class also has:
    the scan above takes it for the project's own unless it is listed, so here the classes themselves are read."""
    problems = set()
    for cls in _project_classes():
        bases = [c for c in cls.__mro__ if third_party(c.__module__)]
        for own in (c for c in cls.__mro__ if c.__module__.split(".")[0] in FIRST_PARTY):
            file = Path(inspect.getsourcefile(own)).resolve().relative_to(ROOT).as_posix()
            for name in _own_private_names(own):
                base = next((b for b in bases if name in vars(b) or _assigned(b, name)), None)
                if base and not any(e.name == name and file in e.where for e in listed()):
                    problems.add(f"{file}: {own.__qualname__}.{name} overrides {base.__module__}."
                                 f"{base.__qualname__}.{name}; list it in {REGISTRY}")
    assert not problems, "\n".join(sorted(problems))
