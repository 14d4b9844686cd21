"""House rules that keep the code base easy to live in: imports only point down the layers."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "korpair"

# data flows corpora -> data -> model/task -> training -> inference -> evaluation/onnx -> serve -> api -> cli
RANK = {
    "atomic": 0, "sample": 0,
    "corpora": 1, "metrics": 1, "plots": 1,
    "data": 2, "model": 2, "task": 2, "resume": 2,
    "training": 3, "inference": 3,
    "evaluation": 4, "onnx": 4,
    "serve": 5,
    "api": 6,
    "cli": 7,
    "__init__": 8, "__main__": 8,
}
ANYONE = {"config", "errors", "version"}


def korpair_imports() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC)
        module = rel.parts[0].removesuffix(".py")
        deps = found.setdefault(module, set())
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("korpair"):
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.startswith("korpair")]
            for name in names:
                parts = name.split(".")
                if len(parts) > 1 and parts[1] in RANK | dict.fromkeys(ANYONE):
                    deps.add(parts[1])
        deps.discard(module)
    return found


def test_every_module_has_a_rank():
    assert set(korpair_imports()) <= set(RANK) | ANYONE


def test_imports_point_down():
    for module, deps in korpair_imports().items():
        if module in ANYONE:
            assert not deps - ANYONE, (module, deps)
            continue
        upward = {d for d in deps - ANYONE if RANK[d] >= RANK[module]}
        assert not upward, f"{module} imports {upward}, which are not below it"


def test_cli_help_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, korpair.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False", "the CLI must start fast: torch loads only when a command needs it"
