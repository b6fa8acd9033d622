"""Dependencies point inward: the core imports no framework and no database client."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "segue"
STDLIB = sys.stdlib_module_names


def imports_of(package: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in (SRC / package).rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        found[str(path.relative_to(SRC))] = names
    return found


def test_core_imports_only_stdlib_msgspec_and_itself():
    for module, names in imports_of("core").items():
        for name in names:
            top = name.split(".")[0]
            allowed = (
                top in STDLIB or top == "msgspec" or name.startswith(("segue.core", "segue.errors"))
            )
            assert allowed, f"{module} imports {name}"


@pytest.mark.parametrize(
    "package",
    [
        "ingest",
        "processor",
        "identity",
        "profiles",
        "connectors",
        "features",
        "decide",
        "experiments",
        "metrics",
    ],
)
def test_domain_packages_never_import_adapters_runtime_or_api(package):
    for module, names in imports_of(package).items():
        for name in names:
            assert not name.startswith(
                ("segue.storage", "segue.runtime", "segue.api", "segue.cli")
            ), f"{module} imports {name}"


def test_adapters_never_import_domain_runtime_or_api():
    for module, names in imports_of("storage").items():
        for name in names:
            assert not name.startswith(
                ("segue.ingest", "segue.processor", "segue.runtime", "segue.api", "segue.cli")
            ), f"{module} imports {name}"


def test_segue_imports_without_the_scale_out_drivers():
    code = (
        "import sys\n"
        "for name in ('redis', 'psycopg', 'nats', 'uvicorn'):\n"
        "    sys.modules[name] = None\n"
        "import segue.runtime, segue.api.app\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
