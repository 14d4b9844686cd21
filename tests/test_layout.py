"""House rules that keep the code base easy to live in: imports only point down the layers."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "korpair"

# A layer may import any layer below it, never one beside or above. The core (types, config,
# errors, atomic writes, the model-folder contract) imports nothing of korpair's but the core.
CORE = {"errors", "types", "config", "atomic", "version", "model_folder", "model_card", "sections"}
LAYER = {
    **dict.fromkeys(CORE, 0),
    "hardware": 1, "corpora": 1, "quiet": 1, "calibration": 1,
    "features": 2,
    "training": 3,
    "inference": 4, "tuning": 4,
    "serve": 5,
    "api": 6,
    "cli": 7,
    "__init__": 8, "__main__": 8,
}
MAX_LINES = 400


def unit(path: Path) -> str:
    """The layer unit of a source file: its top-level module or package name."""
    return path.relative_to(SRC).parts[0].removesuffix(".py")


def korpair_imports() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        module = unit(path)
        deps = found.setdefault(module, set())
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("korpair"):
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.startswith("korpair")]
            for name in names:
                parts = name.split(".")
                if len(parts) > 1 and parts[1] in LAYER:
                    deps.add(parts[1])
        deps.discard(module)
    return found


def test_every_module_has_a_layer():
    assert set(korpair_imports()) <= set(LAYER), set(korpair_imports()) - set(LAYER)


def test_imports_point_down_the_layers():
    for module, deps in korpair_imports().items():
        upward = {d for d in deps if LAYER[d] >= LAYER[module] and not (module in CORE and d in CORE)}
        assert not upward, f"{module} (layer {LAYER[module]}) imports {upward}, which are not below it"


def test_core_loads_no_torch_and_no_other_layer():
    code = (f"import sys; {'; '.join(f'import korpair.{m}' for m in sorted(CORE))}; "
            "print(sorted(m for m in sys.modules if m == 'torch' or (m.startswith('korpair.') and "
            f"m.split('.')[1] not in {sorted(CORE)})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_package_files_stay_small():
    long = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"files over {MAX_LINES} lines (split them by job): {long}"


def test_development_tools_are_not_installed():
    assert not (SRC / "sample.py").exists()
    imported = {n.module for p in SRC.rglob("*.py") for n in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
                if isinstance(n, ast.ImportFrom) and n.module}
    assert not {m for m in imported if m.startswith("tools")}


def test_cli_help_does_not_import_torch():
    code = "import sys, korpair.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False", "the CLI must start fast: torch loads only when a command needs it"


def test_serve_package_imports_no_torch():
    code = "import sys, korpair.serve; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False", "create_app must be importable without torch (tests pass a fake classifier)"
