"""The architecture's boundaries (pyproject's [tool.importlinter] contracts) hold, and a
forbidden import added anywhere breaks them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from maft.processes import REPO_ROOT

PACKAGES = ("maft", "services", "experiment")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` on the packages and pyproject.toml under `root`."""
    code = "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())"
    return subprocess.run([sys.executable, "-c", code, "--no-cache"], cwd=root,
                          capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)})


def test_every_contract_is_kept() -> None:
    result = lint_imports(REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.fixture(scope="module")
def copy_of_the_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packages and the contracts, copied so a test can break them."""
    root = tmp_path_factory.mktemp("tree")
    for package in PACKAGES:
        shutil.copytree(REPO_ROOT / package, root / package,
                        ignore=shutil.ignore_patterns("__pycache__", "static", "data"))
    shutil.copy(REPO_ROOT / "pyproject.toml", root)
    return root


@pytest.mark.parametrize(("module", "line", "contract"), [
    ("maft/voting.py", "import torch", "The shared domain (maft) imports no service"),
    ("maft/debate.py", "from services.gateway import views", "The shared domain (maft)"),
    ("services/gateway/views.py", "import services.trainer.worker", "Services never import"),
    ("services/gateway/deps.py", "import peft", "The gateway imports no ML framework"),
    ("services/trainer/context.py", "from services.inference import launcher",
     "Services never import"),
    ("experiment/views.py", "import services.inference.launcher",
     "The experiment harness uses maft"),
])
def test_a_forbidden_import_breaks_its_contract(copy_of_the_tree: Path, module: str, line: str,
                                                contract: str) -> None:
    path = copy_of_the_tree / module
    original = path.read_text()
    path.write_text(f"{original}\n{line}\n")
    try:
        result = lint_imports(copy_of_the_tree)
    finally:
        path.write_text(original)
    assert result.returncode != 0, result.stdout
    broken = [ln for ln in result.stdout.splitlines() if ln.endswith("BROKEN")]
    assert any(ln.startswith(contract) for ln in broken), result.stdout
