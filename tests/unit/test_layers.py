"""The package's floor plan: no import cycle inside ``factory``, and every import goes down the
layer order declared once in ``factory.LAYERS`` (or stays inside its own unit)."""

from __future__ import annotations

import ast
from pathlib import Path

import factory

PACKAGE = Path(factory.__file__).resolve().parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every ``factory`` module the file imports, at the top or inside a function."""
    found: set[str] = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("factory"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    [*package.split(".")[: len(package.split(".")) - node.level + 1], *filter(None, [base])]
                )
            if base.startswith("factory"):
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def package_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py") if "data" not in p.relative_to(PACKAGE).parts}
    return {name: {m for m in imports_of(path) if m in modules and m != name} for name, path in modules.items()}


def unit_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_unit_has_a_layer():
    layer_of = {unit: index for index, units in enumerate(factory.LAYERS) for unit in units}
    units = {unit_of(module) for module in package_graph()} - {""}
    assert units <= set(layer_of), f"units without a layer in factory.LAYERS: {sorted(units - set(layer_of))}"
    assert len(layer_of) == sum(len(units) for units in factory.LAYERS), "a unit is named in two layers"


def test_imports_go_down_the_layers():
    layer_of = {unit: index for index, units in enumerate(factory.LAYERS) for unit in units}
    wrong = []
    for module, imported in sorted(package_graph().items()):
        unit = unit_of(module)
        if not unit:  # factory/__init__.py declares the layers and imports nothing of them
            assert not imported
            continue
        for target in sorted(imported):
            other = unit_of(target)
            if other and other != unit and layer_of[other] >= layer_of[unit]:
                wrong.append(f"{module} -> {target} ({unit} is layer {layer_of[unit]}, {other} is {layer_of[other]})")
    assert not wrong, "imports against the layer order:\n" + "\n".join(wrong)


def test_no_import_cycle():
    graph = package_graph()
    # a package's __init__ is imported with any of its modules, so an edge to a module is also one to its parents
    edges = {m: {t for t in targets} for m, targets in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_the_checks_see_a_violation(tmp_path):
    """The reader of imports finds relative and function-level imports (so the checks above can fail)."""
    sample = tmp_path / "factory" / "llm" / "client.py"
    sample.parent.mkdir(parents=True)
    sample.write_text("from ..run import x\n\ndef f():\n    from factory.cli import main\n")
    global PACKAGE
    saved, PACKAGE = PACKAGE, tmp_path / "factory"
    try:
        assert imports_of(sample) >= {"factory.run", "factory.run.x", "factory.cli", "factory.cli.main"}
    finally:
        PACKAGE = saved


MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def test_modules_and_functions_stay_small():
    """A module over 400 lines or a function over 60 is a room doing two things: split it."""
    too_long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "data" in path.relative_to(PACKAGE).parts:
            continue
        text = path.read_text(encoding="utf-8")
        lines = len(text.splitlines())
        if lines > MAX_MODULE_LINES:
            too_long.append(f"{module_name(path)}: {lines} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{module_name(path)}.{node.name}: {length} lines")
    assert not too_long, "too long:\n" + "\n".join(too_long)


def test_the_command_line_and_the_engine_do_not_import_distilabel():
    """Only factory.distilabel imports distilabel: the CLI and a run must not pay its import time."""
    import subprocess
    import sys

    probe = "import sys, factory.cli, factory.run, factory.critics.evaluate; print('distilabel' in sys.modules)"
    finished = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.strip() == "False"


def test_bench_uses_only_the_public_api():
    """``bench/`` measures what a user can call: it imports ``factory.api`` and nothing else of the factory."""
    bench = PACKAGE.parent / "bench"
    inside = {
        f"{path.name}: {name}"
        for path in sorted(bench.glob("*.py"))
        for name in imports_of(path)
        if name.split(".")[:2] != ["factory", "api"] and name != "factory"
    }
    assert not inside, "bench/ imports past factory.api:\n" + "\n".join(sorted(inside))


def test_the_public_api_names_only_what_it_has():
    import factory.api

    missing = [name for name in factory.api.__all__ if not hasattr(factory.api, name)]
    assert not missing and len(set(factory.api.__all__)) == len(factory.api.__all__), missing
