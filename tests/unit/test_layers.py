"""The package's folders are its layers, and imports only go down (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import dietstack

ROOT = Path(dietstack.__file__).parent
#: Lower numbers are lower layers; a module may import its own layer and those below.
LAYERS = {
    # Shipped into the containers, or needed by everything: no dietstack imports above.
    "__init__": 0,
    "errors": 0,
    "releases": 0,
    "progress": 0,
    "model": 0,
    "render": 0,
    "services": 0,
    "start": 0,
    "hosts": 1,
    "images": 2,
    "apis": 2,
    "engine": 3,
    "ops": 4,
    "app": 5,
    "cli": 6,
    "__main__": 7,
}


def _imported(path: Path) -> set[str]:
    """The top-level parts of dietstack a module imports."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dietstack"):
            parts = node.module.split(".")
            names = [parts[1]] if len(parts) > 1 else [alias.name for alias in node.names]
            found |= {name for name in names if name != "__version__"}
    return found


def test_every_module_belongs_to_a_layer() -> None:
    tops = {path.relative_to(ROOT).parts[0].removesuffix(".py") for path in ROOT.rglob("*.py")}
    assert tops <= set(LAYERS), f"not in a layer: {sorted(tops - set(LAYERS))}"


def test_imports_only_go_down() -> None:
    upward = []
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).parts
        mine = LAYERS[parts[0].removesuffix(".py")]
        for name in sorted(_imported(path)):
            if LAYERS[name] > mine:
                upward.append(f"{'/'.join(parts)} imports {name}")
    assert upward == []


def test_no_module_is_over_400_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): count
        for path in ROOT.rglob("*.py")
        if (count := len(path.read_text().splitlines())) > 400
    }
    assert long == {}


def test_the_data_files_modules_name_are_there() -> None:
    from dietstack.ops import verifystack

    assert verifystack.STACK_TEMPLATE.is_file()
