"""The package's layers, checked from its source: who may import whom, no import cycles, and the
serving path loads no torch. Imports inside functions (lazy imports) count like any other."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from stra_face.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "stra_face"
TORCH = {"torch", "torchvision", "timm", "facenet_pytorch"}
WEB = {"fastapi", "starlette", "uvicorn"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported_names(name: str) -> set[str]:
    """Every module name `name` imports, anywhere in its source: `from a import b` counts as `a.b`
    when that is a module of ours, else as `a`; relative imports resolved."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return found


IMPORTS = {name: imported_names(name) for name in MODULES}


def layer_of(name: str) -> str:
    """`stra_face.vision.detect` -> `stra_face.vision`; third-party modules -> their top-level name."""
    parts = name.split(".")
    return ".".join(parts[:2]) if parts[0] == "stra_face" and len(parts) > 1 else parts[0]


def violations(layer: str, allowed: set[str] | None = None, forbidden: set[str] = frozenset()) -> list[str]:
    """`module -> import` pairs of `layer` that break its rule: within stra_face only `allowed` layers
    (None: any), and never a forbidden top-level or layer name."""
    broken = []
    for name, imports in IMPORTS.items():
        if layer_of(name) != layer:
            continue
        for target in sorted(imports):
            target_layer = layer_of(target)
            ours = target.split(".")[0] == "stra_face"
            if target_layer in forbidden or (ours and allowed is not None and target_layer not in allowed | {layer}):
                broken.append(f"{name} -> {target}")
    return broken


def test_the_import_scan_sees_the_package():
    """Guards the checks below against passing on an empty or misread tree."""
    assert {"stra_face.vision.detect", "stra_face.service.app", "stra_face.training.face.trainer"} <= set(MODULES)
    assert "torch" in {layer_of(target) for target in IMPORTS["stra_face.models.stra"]}
    assert (
        "stra_face.vision.inference"
        in IMPORTS["stra_face.training.eval.embedders"] | IMPORTS["stra_face.training.face.dlib_port"]
    )
    assert layer_of("stra_face.vision.detect") == "stra_face.vision" and layer_of("torch.nn") == "torch"


def test_vision_is_torch_free_web_free_and_self_contained():
    assert violations("stra_face.vision", allowed=set(), forbidden=TORCH | WEB) == []


def test_gallery_uses_only_vision():
    assert violations("stra_face.gallery", allowed={"stra_face.vision"}, forbidden=TORCH | WEB) == []


def test_models_know_nothing_of_service_or_training():
    assert violations("stra_face.models", forbidden={"stra_face.service", "stra_face.training"} | WEB) == []


def test_training_never_imports_the_service():
    assert violations("stra_face.training", forbidden={"stra_face.service"} | WEB) == []


def test_service_never_imports_training_models_or_torch():
    assert violations("stra_face.service", forbidden={"stra_face.training", "stra_face.models"} | TORCH) == []


LAYERS = {"stra_face.vision", "stra_face.gallery", "stra_face.models", "stra_face.training", "stra_face.service"}


def test_python_api_and_cli_need_neither_training_nor_torch():
    """The modules above vision and gallery that are not the service: the Python API (`FaceAnalyzer`),
    its settings, the `stra-face` command and its face commands. (The analyzer borrows the service's
    pydantic `modes` schema so that its output matches the REST answer; the web stack stays out.)"""
    api = {layer_of(name) for name in MODULES} - LAYERS - {"stra_face"}
    assert {"stra_face.cli", "stra_face.config"} <= api
    broken = [
        v
        for layer in sorted(api)
        for v in violations(layer, forbidden={"stra_face.training", "stra_face.models"} | TORCH | WEB)
    ]
    assert broken == []


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative): the components with more than one module, or a self-import."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
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
                if len(component) > 1 or node in graph[node]:
                    components.append(sorted(component))
    return components


def module_graph() -> dict[str, set[str]]:
    graph = defaultdict(set)
    for name, imports in IMPORTS.items():
        graph[name] |= {target for target in imports if target in MODULES}
    return {name: graph[name] for name in MODULES}


def test_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert sorted(strongly_connected(graph)) == [["a", "b", "c"], ["e"]]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_between_modules():
    assert strongly_connected(module_graph()) == []


def test_serving_path_loads_no_torch():
    """What `stra-face serve` and a Python API user import must not pull torch in, even when installed."""
    code = (
        "import sys, stra_face, stra_face.cli, stra_face.service.app, stra_face.vision.detect, "
        "stra_face.gallery.sqlite, "
        "stra_face.analyzer; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'torchvision', 'timm'}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_cli_command_names_a_module_with_main(command):
    """The CLI stays a thin table: each command is a module of ours with a `main`."""
    module = COMMANDS[command][0]
    assert module in MODULES
    assert any(
        isinstance(node, ast.FunctionDef) and node.name == "main"
        for node in ast.parse(MODULES[module].read_text()).body
    )
