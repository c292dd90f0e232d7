"""Every benchmark module imports, and every bench script starts as a file, without running a bench.

The benches are not run in CI (they build their own databases and take minutes); this keeps
a renamed or moved import from breaking them unnoticed.
"""

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
MODULES = sorted(
    ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
    for path in BENCH.rglob("*.py")
    if "results" not in path.parts
)
SCRIPTS = sorted(
    path for path in BENCH.glob("*.py") if 'if __name__ == "__main__":' in path.read_text(encoding="utf-8")
)
# bench/train.py imports torch and sets up Django before it parses its options (10 s for
# --help on a busy machine); its imports are checked in-process by the test above.
SLOW_TO_START = {"train.py"}


def test_the_bench_folder_has_modules_to_check():
    assert "bench.common" in MODULES
    assert "bench.annotate_load" in MODULES
    assert "bench.loadtest.clients" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_bench_module_imports(name):
    importlib.import_module(name)


@pytest.mark.parametrize("script", [s for s in SCRIPTS if s.name not in SLOW_TO_START], ids=lambda s: s.name)
def test_bench_script_starts_as_a_file(script):
    """The README's commands run a bench as ``python bench/<name>.py``: its first lines must make
    the ``bench`` package importable from there."""
    proc = subprocess.run([sys.executable, str(script), "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("usage:")
