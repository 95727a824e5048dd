"""The project's structure, read from the source with `ast` (nothing is imported, so this runs in well under a second).

- Module level: the import graph of the project's own modules has no cycle. Every import statement counts,
  including the lazy ones inside functions and methods; only those under `if TYPE_CHECKING:` do not.
- Folder level: with each module collapsed to its folder (lab/*.py = "lab", lab/run/*.py = "lab.run", the root
  entry scripts = "<scripts>"), the graph has no cycle either, and the layering holds: the shared layer (core,
  lab, datamodules) never imports a backend (lightning_modules, keras_models) or callbacks, and the ground
  package (core) imports nothing of the project but itself.
- Package level: with each module collapsed to its top-level package (lab/run/*.py = "lab"), no cycle either.
- Module file names are unique, except the per-backend pairs (lightning_modules/.../x.py, keras_models/.../x.py)
  that mirror one shared concept.
- The two backends mirror each other: every module of one has its counterpart at the same path in the other,
  except the one-sided modules of ONE_SIDED, which ARCHITECTURE.md names.

The checkers take a root folder, so the tests at the bottom run them on small synthetic trees and show
that each check fails when it should.
"""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "lab", "datamodules", "lightning_modules", "keras_models", "callbacks", "bench", "scripts")
SCRIPTS = "<scripts>"
BACKENDS = ("lightning_modules", "keras_models", "callbacks")
SHARED = ("core", "lab", "datamodules")
GROUND = "core"
PAIRED = {"lightning_modules", "keras_models"}
# Backend modules with no counterpart on the other side (ARCHITECTURE.md, Rooms, says what each holds).
ONE_SIDED = {"lightning_modules/classifier.py", "lightning_modules/distributed.py",
             "lightning_modules/epoch_metrics.py", "lightning_modules/speedups.py",
             "lightning_modules/rank_death.py"}


# --------------------------------------------------------------------------------------------------- the checkers

def project_modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under the project's packages and the root entry scripts."""
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    for path in sorted(root.glob("*.py")):
        modules[path.stem] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    """`if TYPE_CHECKING:` or `if typing.TYPE_CHECKING:` (any `x.TYPE_CHECKING`)."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST):
    """Every Import / ImportFrom node, at any depth (functions, methods, try blocks...), except those in the body of
    an `if TYPE_CHECKING:` (its `else:` branch runs, so it counts)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
            continue
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            children = [node.test, *node.orelse]
        else:
            children = list(ast.iter_child_nodes(node))
        stack.extend(reversed(children))


def _package_of(name: str, path: Path) -> str:
    """The package a module's relative imports start from."""
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _prefixes(dotted: str) -> list[str]:
    parts = dotted.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def module_imports(name: str, path: Path, modules: dict[str, Path]) -> dict[str, int]:
    """The project modules `name` imports -> the line of the first such import.

    `import a.b.c` (and `from a.b.c import x`) depends on a, a.b and a.b.c: Python runs the packages' __init__.py
    first. `from pkg import name` depends on the module pkg.name when that is a module file, else on pkg itself.
    Third-party modules are left out. Left out too: the packages a module is inside of, when reached only as the
    package part of a dotted path (`from core.io import x` in lab/run/runner.py). Python has always initialised those
    before the module runs, whatever it imports, so counting them would turn every package whose __init__ imports
    a submodule into a cycle. An explicit dependency on the package's own contents (`from datamodules import
    load_splits` in a datamodules module) does count.
    """
    ancestors = set(_prefixes(name)[:-1]) if path.name != "__init__.py" else set(_prefixes(name))
    found: dict[str, int] = {}

    def add(target: str, line: int, explicit: bool) -> None:
        if target in modules and target != name and (explicit or target not in ancestors):
            found.setdefault(target, line)

    for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                *packages, last = _prefixes(alias.name)
                for package in packages:
                    add(package, node.lineno, False)
                add(last, node.lineno, True)
            continue
        if node.level:  # relative import
            base = _package_of(name, path).split(".") if _package_of(name, path) else []
            base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
            base = ".".join(base + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        if not base:
            continue
        *packages, last = _prefixes(base)
        for package in packages:
            add(package, node.lineno, False)
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            if alias.name != "*" and submodule in modules:
                add(last, node.lineno, False)  # the package runs first, as a package
                add(submodule, node.lineno, True)
            else:
                add(last, node.lineno, True)  # a name from base's own contents
    return found


def import_graph(root: Path) -> tuple[dict[str, dict[str, int]], dict[str, Path]]:
    """module -> {imported project module: line}, and the module files."""
    modules = project_modules(root)
    return {name: module_imports(name, path, modules) for name, path in modules.items()}, modules


def strongly_connected(graph: dict[str, set[str] | dict]) -> list[list[str]]:
    """Tarjan's strongly connected components (iterative), those with more than one node or a self-loop."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    nodes = sorted(set(graph) | {t for targets in graph.values() for t in targets})
    for start in nodes:
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph.get(node, ()):
                    components.append(sorted(component))
    return components


def _cycle_in(component: list[str], graph) -> list[str]:
    """One concrete cycle through the component's first node (shortest, by breadth-first search)."""
    members = set(component)
    start = component[0]
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph.get(node, ())):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start] if node != start else [start, start]
                if child in members and child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # cannot happen in a strongly connected component


def find_cycles(graph) -> list[list[str]]:
    """One cycle per strongly connected component, as a path that starts and ends at the same node."""
    return [_cycle_in(component, graph) for component in strongly_connected(graph)]


def describe_cycle(cycle: list[str], graph: dict[str, dict[str, int]], modules: dict[str, Path], root: Path) -> str:
    steps = [cycle[0]]
    for source, target in zip(cycle, cycle[1:]):
        where = f"{modules[source].relative_to(root).as_posix()}:{graph[source][target]}"
        steps.append(f"-> {target} ({where})")
    return " ".join(steps)


def folder_of(name: str, modules: dict[str, Path], root: Path) -> str:
    """core/io.py -> core, lab/run/__init__.py -> lab.run, bench/speed.py -> bench, train_keras.py -> <scripts>."""
    folder = modules[name].parent.relative_to(root).parts
    return ".".join(folder) if folder else SCRIPTS


def folder_graph(root: Path) -> dict[str, dict[str, list[str]]]:
    """folder -> {imported folder: ["module -> module (file:line)", ...]}."""
    graph, modules = import_graph(root)
    folders: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for source, targets in graph.items():
        folders[folder_of(source, modules, root)]  # every folder is a node
        for target, line in targets.items():
            a, b = folder_of(source, modules, root), folder_of(target, modules, root)
            if a != b:
                folders[a][b].append(f"{source} -> {target} ({modules[source].relative_to(root).as_posix()}:{line})")
    return {k: dict(v) for k, v in folders.items()}


def package_graph(root: Path) -> dict[str, dict[str, list[str]]]:
    """top-level package -> {imported top-level package: ["module -> module (file:line)", ...]}."""
    folders = folder_graph(root)
    packages: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for source, targets in folders.items():
        packages[source.split(".")[0]]
        for target, edges in targets.items():
            if source.split(".")[0] != target.split(".")[0]:
                packages[source.split(".")[0]][target.split(".")[0]].extend(edges)
    return {k: dict(v) for k, v in packages.items()}


def layering_violations(root: Path) -> list[str]:
    """The shared layer importing a backend or callbacks; the ground package importing beyond itself."""
    graph, modules = import_graph(root)
    bad = []
    for source, targets in sorted(graph.items()):
        where = modules[source].relative_to(root).as_posix()
        for target, line in sorted(targets.items()):
            top, source_top = target.split(".")[0], source.split(".")[0]
            if source_top in SHARED and top in BACKENDS:
                bad.append(f"{source} imports {target} ({where}:{line})")
            elif source_top == GROUND and top != GROUND:
                bad.append(f"ground module {source} imports {target} ({where}:{line})")
    return bad


def duplicate_module_names(root: Path) -> dict[str, list[str]]:
    """Module file names (no __init__) used more than once, except one lightning_modules / keras_models pair."""
    by_name: dict[str, list[str]] = defaultdict(list)
    for path in project_modules(root).values():
        if path.name != "__init__.py" and path.stem != "conftest":
            by_name[path.stem].append(path.relative_to(root).as_posix())
    duplicates = {}
    for stem, paths in sorted(by_name.items()):
        if len(paths) < 2:
            continue
        if len(paths) == 2 and {p.split("/")[0] for p in paths} == PAIRED:
            continue
        duplicates[stem] = sorted(paths)
    return duplicates


def unpaired_backend_modules(root: Path, one_sided: set[str]) -> list[str]:
    """Backend modules without a counterpart at the same path in the other backend, and not in one_sided; a
    one_sided entry that has a counterpart, or no file, is reported too."""
    sides = {package: {p.relative_to(root / package).as_posix() for p in (root / package).rglob("*.py")
                       if "__pycache__" not in p.parts} for package in sorted(PAIRED)}
    (a, mine), (b, theirs) = sides.items()
    unpaired = sorted([f"{a}/{path}" for path in mine - theirs] + [f"{b}/{path}" for path in theirs - mine])
    stale = sorted(one_sided - set(unpaired))
    return [path for path in unpaired if path not in one_sided] + [f"{path} (listed as one-sided)" for path in stale]


# --------------------------------------------------------------------------------------------- the project's tests

def test_the_checker_sees_the_whole_project():
    graph, modules = import_graph(ROOT)
    assert {"core.errors", "lab.run.backend", "datamodules", "lightning_modules.components.network",
            "keras_models.training", "callbacks.keras_recorder", "bench.common", "train_keras",
            "run_lab"} <= set(modules)
    assert "lab.specs.architectures" in graph["lightning_modules.components.network"]
    assert not any(name.startswith("tests") for name in modules)


def test_no_import_cycle_between_modules():
    graph, modules = import_graph(ROOT)
    cycles = [describe_cycle(cycle, graph, modules, ROOT) for cycle in find_cycles(graph)]
    assert not cycles, "import cycles between modules:\n" + "\n".join(cycles)


def test_no_import_cycle_between_folders():
    folders = folder_graph(ROOT)
    cycles = []
    for cycle in find_cycles(folders):
        steps = [f"{a} -> {b} via {'; '.join(folders[a][b])}" for a, b in zip(cycle, cycle[1:])]
        cycles.append(" => ".join(cycle) + "\n    " + "\n    ".join(steps))
    assert not cycles, "import cycles between folders:\n" + "\n".join(cycles)


def test_no_import_cycle_between_top_level_packages():
    packages = package_graph(ROOT)
    assert {"core", "lab", "datamodules", "lightning_modules", "keras_models", "callbacks", "bench", "scripts",
            SCRIPTS} <= set(packages)
    cycles = [" => ".join(cycle) + "\n    " + "\n    ".join(
        f"{a} -> {b} via {packages[a][b][0]}" for a, b in zip(cycle, cycle[1:])) for cycle in find_cycles(packages)]
    assert not cycles, "import cycles between top-level packages:\n" + "\n".join(cycles)


def test_the_shared_layer_never_imports_a_backend_and_the_ground_imports_only_itself():
    bad = layering_violations(ROOT)
    assert not bad, "layering violations:\n" + "\n".join(bad)


def test_module_names_are_unique_except_backend_pairs():
    duplicates = duplicate_module_names(ROOT)
    assert not duplicates, "module names used more than once: " + "; ".join(
        f"{stem}: {', '.join(paths)}" for stem, paths in duplicates.items())


def test_the_backends_mirror_each_other():
    unpaired = unpaired_backend_modules(ROOT, ONE_SIDED)
    assert not unpaired, "backend modules without a counterpart: " + ", ".join(unpaired)
    architecture = (ROOT / "ARCHITECTURE.md").read_text()
    assert all(f"`{Path(path).name}`" in architecture for path in ONE_SIDED)


# ------------------------------------------------------------------------- the checkers fail when they should

def _tree(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_a_lazy_import_inside_a_method_closes_a_cycle(tmp_path):
    root = _tree(tmp_path, {
        "lab/__init__.py": "",
        "lab/specs/__init__.py": "",
        "lab/specs/models.py": "import numpy\nfrom core.errors import LabError\n",
        "core/errors.py": ("class LabError(Exception):\n"
                          "    def explain(self):\n"
                          "        if True:\n"
                          "            from lab.specs import models  # lazy, but a dependency all the same\n"),
    })
    graph, modules = import_graph(root)
    assert graph["core.errors"] == {"lab": 4, "lab.specs": 4, "lab.specs.models": 4}
    assert graph["lab.specs.models"] == {"core.errors": 2}  # numpy is third-party; lab is its own package
    cycles = find_cycles(graph)
    assert cycles == [["core.errors", "lab.specs.models", "core.errors"]]
    assert describe_cycle(cycles[0], graph, modules, root) == (
        "core.errors -> lab.specs.models (core/errors.py:4) -> core.errors (lab/specs/models.py:2)")


def test_a_type_checking_import_is_not_a_dependency(tmp_path):
    root = _tree(tmp_path, {
        "lab/__init__.py": "",
        "lab/a.py": "from lab.b import thing\n",
        "lab/b.py": ("import typing\nfrom typing import TYPE_CHECKING\n"
                     "if TYPE_CHECKING:\n    from lab.a import x\n"
                     "if typing.TYPE_CHECKING:\n    import lab.a\n"
                     "def f():\n    if TYPE_CHECKING:\n        from lab import a\n"
                     "thing = 1\n"),
    })
    graph, _ = import_graph(root)
    assert graph["lab.b"] == {}
    assert find_cycles(graph) == []
    # ... but the else branch of `if TYPE_CHECKING:` runs, so it counts.
    (root / "lab/b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    pass\n"
                                   "else:\n    from lab.a import x\nthing = 1\n")
    graph, _ = import_graph(root)
    assert find_cycles(graph) == [["lab.a", "lab.b", "lab.a"]]


def test_importing_a_dotted_module_depends_on_its_packages(tmp_path):
    # callbacks/__init__.py imports lab.tool, and lab.tool imports callbacks.sub, so runs callbacks/__init__.py.
    root = _tree(tmp_path, {
        "lab/__init__.py": "",
        "lab/tool.py": "def f():\n    import callbacks.sub as s\n",
        "callbacks/__init__.py": "from lab.tool import f\n",
        "callbacks/sub.py": "",
    })
    graph, _ = import_graph(root)
    assert graph["lab.tool"] == {"callbacks": 2, "callbacks.sub": 2}
    assert find_cycles(graph) == [["callbacks", "lab.tool", "callbacks"]]


def test_a_package_init_may_import_its_submodules_but_not_be_imported_back(tmp_path):
    files = {
        "datamodules/__init__.py": "from datamodules.registry import load\ndef load_splits(): pass\n",
        "datamodules/registry.py": "from datamodules.base import ImageSet\nfrom datamodules import digits\nload = 1\n",
        "datamodules/base.py": "ImageSet = 1\n",
        "datamodules/digits.py": "",
    }
    graph, _ = import_graph(_tree(tmp_path, files))
    assert graph["datamodules.registry"] == {"datamodules.base": 1, "datamodules.digits": 2}
    assert find_cycles(graph) == []
    # A name from the package's own __init__ is a real dependency on it: a cycle (and a circular-import error).
    (tmp_path / "datamodules/registry.py").write_text("def f():\n    from datamodules import load_splits\nload = 1\n")
    graph, _ = import_graph(tmp_path)
    assert find_cycles(graph) == [["datamodules", "datamodules.registry", "datamodules"]]


def test_relative_imports_are_resolved(tmp_path):
    root = _tree(tmp_path, {
        "lab/__init__.py": "",
        "lab/run/__init__.py": "",
        "lab/run/a.py": "from . import b\n",
        "lab/run/b.py": "from ..errors import E\nfrom .a import x\n",
        "lab/errors.py": "",
    })
    graph, _ = import_graph(root)
    assert graph["lab.run.a"] == {"lab.run.b": 1}
    assert graph["lab.run.b"] == {"lab.errors": 1, "lab.run.a": 2}
    assert find_cycles(graph) == [["lab.run.a", "lab.run.b", "lab.run.a"]]


def test_a_cycle_between_folders_is_found_without_one_between_modules(tmp_path):
    root = _tree(tmp_path, {
        "lab/__init__.py": "", "lab/run/__init__.py": "", "lab/specs/__init__.py": "",
        "lab/run/a.py": "from lab.specs.b import x\n",
        "lab/specs/b.py": "x = 1\n",
        "lab/specs/c.py": "def f():\n    from lab.run import d\n",
        "lab/run/d.py": "",
        "train_x.py": "from lab.run.a import main\n",
    })
    graph, modules = import_graph(root)
    assert find_cycles(graph) == []
    folders = folder_graph(root)
    assert folder_of("train_x", modules, root) == SCRIPTS
    assert find_cycles(folders) == [["lab.run", "lab.specs", "lab.run"]]
    assert folders["lab.specs"]["lab.run"] == ["lab.specs.c -> lab.run (lab/specs/c.py:2)",
                                                "lab.specs.c -> lab.run.d (lab/specs/c.py:2)"]


def test_layering_violations_are_found(tmp_path):
    root = _tree(tmp_path, {
        "lab/__init__.py": "", "lab/specs/__init__.py": "", "keras_models/__init__.py": "",
        "keras_models/network.py": "from core.errors import E\n",
        "core/errors.py": "from core.io import write\n",
        "core/io.py": "def write():\n    from lab.specs.zoo import B\n",
        "lab/specs/zoo.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import keras_models.network\n"
                            "def f():\n    from keras_models import network\n",
        "datamodules/__init__.py": "",
        "datamodules/tf_data.py": "import callbacks.keras_recorder\n",
        "callbacks/__init__.py": "", "callbacks/keras_recorder.py": "",
    })
    assert layering_violations(root) == [
        "ground module core.io imports lab (core/io.py:2)",
        "ground module core.io imports lab.specs (core/io.py:2)",
        "ground module core.io imports lab.specs.zoo (core/io.py:2)",
        "datamodules.tf_data imports callbacks (datamodules/tf_data.py:1)",
        "datamodules.tf_data imports callbacks.keras_recorder (datamodules/tf_data.py:1)",
        "lab.specs.zoo imports keras_models (lab/specs/zoo.py:5)",
        "lab.specs.zoo imports keras_models.network (lab/specs/zoo.py:5)",
    ]


def test_duplicate_module_names_are_found(tmp_path):
    root = _tree(tmp_path, {
        "datamodules/__init__.py": "", "bench/__init__.py": "", "lab/__init__.py": "", "lab/run/__init__.py": "",
        "datamodules/cifar.py": "", "bench/cifar.py": "",  # a duplicate
        "lightning_modules/components/network.py": "", "keras_models/components/network.py": "",  # a pair: allowed
        "lightning_modules/weights.py": "", "keras_models/weights.py": "", "lab/run/weights.py": "",  # three: not
        "keras_models/a/tuning.py": "", "keras_models/b/tuning.py": "",  # two on one side: not a pair
        "compare.py": "", "lab/run/compare.py": "",  # root scripts count
        "tests/conftest.py": "", "tests/test_x.py": "", "lab/test_x.py": "",  # tests/ is not scanned
    })
    assert duplicate_module_names(root) == {
        "cifar": ["bench/cifar.py", "datamodules/cifar.py"],
        "compare": ["compare.py", "lab/run/compare.py"],
        "tuning": ["keras_models/a/tuning.py", "keras_models/b/tuning.py"],
        "weights": ["keras_models/weights.py", "lab/run/weights.py", "lightning_modules/weights.py"],
    }


def test_a_cycle_between_top_level_packages_is_found_without_one_between_folders(tmp_path):
    # The tree before the ground package: datamodules imported lab's root modules, and lab.config datamodules.
    root = _tree(tmp_path, {
        "lab/__init__.py": "", "lab/errors.py": "class LabError(Exception): ...\n",
        "lab/config/__init__.py": "", "lab/config/settings.py": "from datamodules.registry import DATASETS\n",
        "datamodules/__init__.py": "", "datamodules/registry.py": "from lab.errors import LabError\nDATASETS = ()\n",
    })
    assert find_cycles(folder_graph(root)) == []
    packages = package_graph(root)
    assert find_cycles(packages) == [["datamodules", "lab", "datamodules"]]
    assert packages["lab"]["datamodules"] == [
        "lab.config.settings -> datamodules (lab/config/settings.py:1)",
        "lab.config.settings -> datamodules.registry (lab/config/settings.py:1)"]
    # With the ground below both, as in this project, the cycle is gone.
    (root / "lab/errors.py").unlink()
    _tree(root, {"core/__init__.py": "", "core/errors.py": "class LabError(Exception): ...\n",
                 "datamodules/registry.py": "from core.errors import LabError\nDATASETS = ()\n"})
    assert find_cycles(package_graph(root)) == []


def test_a_broken_backend_pair_is_found(tmp_path):
    root = _tree(tmp_path, {
        "lightning_modules/__init__.py": "", "keras_models/__init__.py": "",
        "lightning_modules/training.py": "", "keras_models/training.py": "",  # a pair
        "lightning_modules/components/network.py": "", "keras_models/network.py": "",  # not at the same path
        "lightning_modules/classifier.py": "",  # one-sided, listed
        "keras_models/placement.py": "",  # one-sided, not listed
        "lightning_modules/weights.py": "", "keras_models/weights.py": "",  # a pair listed as one-sided
    })
    one_sided = {"lightning_modules/classifier.py", "lightning_modules/weights.py", "lightning_modules/gone.py"}
    assert unpaired_backend_modules(root, one_sided) == [
        "keras_models/network.py", "keras_models/placement.py", "lightning_modules/components/network.py",
        "lightning_modules/gone.py (listed as one-sided)", "lightning_modules/weights.py (listed as one-sided)",
    ]
