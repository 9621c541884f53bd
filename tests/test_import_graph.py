"""The package's import graph: its units (top-level modules and subpackages) import one another
without a cycle, each only units of the layers below its own, and the leaves no other unit.

Every import counts, at module level or inside a function: a function-level import that closes a
cycle still ties the two units together, it only hides it until that function runs."""

import ast
from pathlib import Path

import nlpipe

PACKAGE = Path(nlpipe.__file__).parent
ROOT = "nlpipe"
# Modules every unit may import; they import nothing of nlpipe but errors and limits.
LEAVES = {"nlpipe.errors", "nlpipe.limits", "nlpipe.about", "nlpipe.metrics", "nlpipe.files", "nlpipe.surrogates",
          "nlpipe.events"}
LEAF_MAY_IMPORT = {"nlpipe.errors", "nlpipe.limits"}
# Bottom to top: a unit imports units of lower layers only. The report needs the leaves only; the
# package root, which runs first on every import of nlpipe.anything, imports
# nlpipe.about at once and the job API only when asked for it (`from nlpipe import run_job`).
LAYERS = [
    LEAF_MAY_IMPORT,
    LEAVES - LEAF_MAY_IMPORT,
    {"nlpipe.llm", "nlpipe.report", "nlpipe.worker_processes"},
    {"nlpipe.squad"},
    {"nlpipe.training"},
    {"nlpipe.components"},
    {"nlpipe.io"},
    {"nlpipe.evaluation"},
    {"nlpipe.config"},
    {"nlpipe.processing"},
    {"nlpipe.runner"},
    {"nlpipe.distributed"},
    {"nlpipe.jobs", "nlpipe.display"},
    {"nlpipe.cli"},
    {"nlpipe.__main__", ROOT},
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    """Whether `name` (dotted) is a module or package of nlpipe, rather than a name inside one."""
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imported_modules(path: Path) -> set[str]:
    """The nlpipe modules that the module at `path` imports, anywhere in it."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from . import catalog` imports a module; `from . import __version__` a name of the package.
            found |= {f"{base}.{alias.name}" if is_module(f"{base}.{alias.name}") else base for alias in node.names}
    return {module for module in found if module == ROOT or module.startswith(ROOT + ".")}


def unit_of(module: str) -> str:
    """nlpipe.llm.engine → nlpipe.llm; nlpipe.evaluation → nlpipe.evaluation; nlpipe → nlpipe."""
    return ".".join(module.split(".")[:2])


def unit_graph() -> dict[str, set[str]]:
    """{unit: the other units it imports}."""
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        unit = unit_of(module_name(path))
        graph.setdefault(unit, set()).update(unit_of(m) for m in imported_modules(path))
    return {unit: imports - {unit} for unit, imports in graph.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as [a, b, ..., a]; None when it has none."""
    done, path = set(), []

    def visit(unit: str) -> list[str] | None:
        if unit in path:
            return path[path.index(unit):] + [unit]
        if unit in done:
            return None
        path.append(unit)
        for imported in sorted(graph.get(unit, ())):
            cycle = visit(imported)
            if cycle:
                return cycle
        path.pop()
        done.add(unit)
        return None

    return next((cycle for unit in sorted(graph) if (cycle := visit(unit))), None)


def test_the_units_import_one_another_without_a_cycle():
    cycle = find_cycle(unit_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_leaves_import_errors_and_limits_only():
    graph = unit_graph()
    assert LEAVES <= graph.keys(), f"leaves missing: {sorted(LEAVES - graph.keys())}"
    wrong = {leaf: sorted(graph[leaf] - LEAF_MAY_IMPORT) for leaf in LEAVES if graph[leaf] - LEAF_MAY_IMPORT}
    assert wrong == {}


def test_every_unit_imports_lower_layers_only():
    layer = {unit: level for level, units in enumerate(LAYERS) for unit in units}
    graph = unit_graph()
    assert graph.keys() <= layer.keys(), f"give these units a layer in LAYERS: {sorted(graph.keys() - layer.keys())}"
    upward = sorted(f"{unit} -> {imported}" for unit, imports in graph.items() for imported in imports
                    if layer[imported] >= layer[unit])
    assert upward == []


def test_no_module_imports_from_the_package_root():
    # `from . import __version__` ties a module to nlpipe/__init__.py; nlpipe.about holds it.
    importers = sorted(module_name(path) for path in PACKAGE.rglob("*.py") if ROOT in imported_modules(path))
    assert importers == []


def test_the_graph_sees_every_kind_of_import():
    # A check that parsed too little would pass on any package.
    graph = unit_graph()
    assert "nlpipe.llm" in graph["nlpipe.components"]  # from ..llm.engine import ... (relative, module level)
    assert "nlpipe.components" in graph["nlpipe.cli"]  # from .components.llama_qa import ... (in a function)
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
