"""The import structure of ``src/genmodes``: no circles, and the report and config parsing load no torch.

The graph is read from the source with ``ast`` (module -> the genmodes modules it imports, as in
tests/test_layers.py). Two views:

- what runs on import: imports at the top of a module (not inside functions, not under
  ``if TYPE_CHECKING``). A circle there is an import-order accident waiting to happen.
- every import, function-level ones included, between modules (a package's ``__init__`` left out: it
  is a facade that imports its modules lazily). A circle there means two modules need each other's
  internals (the runner and its executors, the report's build and details once did).
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import genmodes

SRC = Path(genmodes.__file__).parent


def module_name(path: Path) -> str:
    parts = ("genmodes",) + path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    rel = Path(*name.split(".")[1:]) if "." in name else Path()
    return (SRC / rel).with_suffix(".py").exists() or (SRC / rel / "__init__.py").exists()


def _targets(node: ast.AST) -> set[str]:
    out: set[str] = set()
    if isinstance(node, ast.Import):
        out |= {a.name for a in node.names if a.name.split(".")[0] == "genmodes"}
    elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "genmodes":
        out.add(node.module)
        out |= {f"{node.module}.{a.name}" for a in node.names if _is_module(f"{node.module}.{a.name}")}
    return out


def _top_level(body: list[ast.stmt]) -> set[str]:
    """Imports executed when the module is imported: module body, top-level if/try blocks, class bodies."""
    out: set[str] = set()
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out |= _targets(node)
        elif isinstance(node, ast.If):
            if "TYPE_CHECKING" not in ast.unparse(node.test):
                out |= _top_level(node.body) | _top_level(node.orelse)
        elif isinstance(node, ast.Try):
            out |= _top_level(node.body) | _top_level(node.orelse) | _top_level(node.finalbody)
            for h in node.handlers:
                out |= _top_level(h.body)
        elif isinstance(node, ast.ClassDef):
            out |= _top_level(node.body)
    return out


def graph(top_level_only: bool) -> dict[str, set[str]]:
    g: dict[str, set[str]] = {}
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        mod = module_name(path)
        deps = _top_level(tree.body) if top_level_only else set().union(*map(_targets, ast.walk(tree)))
        g[mod] = {d for d in deps if d != mod and _is_module(d)}
    if not top_level_only:  # package facades out (see the module docstring)
        packages = {module_name(p.parent / "__init__.py") for p in SRC.rglob("__init__.py")}
        g = {m: {d for d in deps if d not in packages} for m, deps in g.items() if m not in packages}
    return g


def cycle(g: dict[str, set[str]]) -> list[str] | None:
    """One circle of ``g`` (as a path that ends where it starts), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for d in sorted(g.get(m, ())):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state:
                found = visit(d)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(g):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_no_import_circle_among_top_level_imports():
    assert cycle(graph(top_level_only=True)) is None


def test_no_import_circle_between_modules_even_through_function_level_imports():
    assert cycle(graph(top_level_only=False)) is None


def test_the_check_sees_a_circle():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    # a function-level import back is a circle between modules, not one at import time
    tree = ast.parse(textwrap.dedent("""
        from genmodes.io import atomic_write

        def f():
            from genmodes.report.build import build_report
    """))
    assert _top_level(tree.body) == {"genmodes.io"}
    assert set().union(*map(_targets, ast.walk(tree))) == {"genmodes.io", "genmodes.report.build"}


TORCH_FREE = """
import sys
import genmodes.report, genmodes.report.build, genmodes.report.sections, genmodes.experiments.config as c
from genmodes.conditions import CONTEXT_STAGES, MODEL_STAGES, context_stage, model_stage
study = c.parse_config({
    "name": "t", "model": "tiny-random", "datasets": [{"family": "simple_reversals"}],
    "conditions": [{"name": "finetune", "settings": {"epochs": 2, "method": "lora"}},
                   {"name": "ft+rag", "model": {"kind": "finetune", "steps": 3},
                    "context": {"kind": "retrieval", "method": "bm25"}},
                   {"name": "rl", "model": {"kind": "rl", "rl_dataset": "simple_reversals"},
                    "context": {"kind": "thinking"}},
                   {"name": "scratch", "kind": "from_scratch", "settings": {"steps": 3}},
                   {"name": "aug", "kind": "augmented_finetune", "settings": {"source": "oracle"}},
                   {"name": "ic", "kind": "in_context"},
                   {"name": "cooc", "kind": "baseline"}]})
assert [s.kind for s in study.conditions][:2] == ["finetune", "finetune+retrieval"], study.conditions
for kind in MODEL_STAGES:
    model_stage(kind).Info
for kind in CONTEXT_STAGES:
    context_stage(kind).Info
print("torch" in sys.modules)
"""


def test_the_report_and_config_parsing_load_no_torch():
    """Importing the report, parsing and resolving a config of every stage (a composed finetune among
    them) and reading every stage's Info class leaves torch unloaded (a fresh interpreter)."""
    out = subprocess.run([sys.executable, "-c", TORCH_FREE], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
