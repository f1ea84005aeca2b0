"""Lower layers never import upper ones: data < models < scoring < training < conditions <
experiments < report, with the base modules (errors, io, limits, timing, tokens) below everything and the CLI
(``cli`` and every package's ``commands``) above. Read from the source with ``ast``, so an import
inside a function counts as much as one at the top of a file."""

import ast
import sys
from pathlib import Path

import genmodes

SRC = Path(genmodes.__file__).parent
BASE = 0
CLI = 99
LAYERS = {"genmodes": BASE, "genmodes.errors": BASE, "genmodes.io": BASE, "genmodes.limits": BASE,
          "genmodes.tokens": BASE, "genmodes.timing": BASE, "genmodes.data": 1, "genmodes.models": 2,
          "genmodes.scoring": 3, "genmodes.chat": 3, "genmodes.generate": 3, "genmodes.training": 4, "genmodes.conditions": 5,
          "genmodes.experiments": 6, "genmodes.report": 7,
          "genmodes.cli": CLI, "genmodes.__main__": CLI}


def layer(module: str) -> int:
    parts = module.split(".")
    if parts[-1] == "commands":
        return CLI
    for n in range(len(parts), 0, -1):
        name = ".".join(parts[:n])
        if name in LAYERS:
            return LAYERS[name]
    raise AssertionError(f"{module}: in no layer; add its package to LAYERS")


def module_name(path: Path) -> str:
    parts = ("genmodes",) + path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """genmodes modules ``path`` imports (``from genmodes.x import y`` counts y when it is a module)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "genmodes"}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import; the layer check reads absolute ones"
            if node.module and node.module.split(".")[0] == "genmodes":
                out.add(node.module)
                for a in node.names:
                    sub = f"{node.module}.{a.name}"
                    if (SRC / Path(*sub.split(".")[1:])).with_suffix(".py").exists() or \
                            (SRC / Path(*sub.split(".")[1:])).is_dir():
                        out.add(sub)
    return out


def violations() -> list[str]:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        mod = module_name(path)
        for dep in sorted(imports(path)):
            if layer(dep) > layer(mod):
                found.append(f"{mod} (layer {layer(mod)}) imports {dep} (layer {layer(dep)})")
    return found


def test_lower_layers_do_not_import_upper_ones():
    assert violations() == []


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    # the same reader over a copy of the package with one upward import added must report it
    import shutil

    copy = tmp_path / "genmodes"
    shutil.copytree(SRC, copy)
    p = copy / "data" / "types.py"
    p.write_text(p.read_text(encoding="utf-8") + "\n\ndef _f():\n    from genmodes.report import build_report\n")
    monkeypatch.setattr(sys.modules[__name__], "SRC", copy)
    assert violations() == ["genmodes.data.types (layer 1) imports genmodes.report (layer 7)"]
