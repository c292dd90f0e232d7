"""The dependency direction, read from the imports (ast), so that it cannot drift.

Data flows one way (DESIGN.md): annotation -> (export) -> training -> model version ->
modelloop scores -> annotation shows deltas. In imports that means:

- ``training`` reads from annotation only ``annotation.dataset`` (the export format and the
  export service: a run reads, and for scheduled retraining writes, an export file) and the
  ``DatasetExport`` row a run points at (which export it read makes a run reproducible);
- ``modelloop`` reads from annotation only ``annotation.models`` (what it scores);
- inside annotation only ``annotation.research`` reads ``training`` and
  ``modelloop.models``; the rest uses the model loop through ``modelloop.selectors`` and
  ``modelloop.services`` only (the score shown, the scoring queue);
- ``annotation.dataset.format`` and ``annotation.dataset.selection`` touch no ORM: they
  describe a file format and a rule, and training reads them without a database;
- ``morale``'s shared pieces (the API's permissions, pagination and filters, the broker,
  the error pages, the job lifecycle, the roles, the settings, the text rule) import no app: the apps
  import them. The URL configurations (``morale.urls``, ``morale.api.urls``) compose the
  apps and may import them;
- no function-level import reaches into another top-level package, where it would hide a
  dependency (lazy imports inside one package, for cycles or start-up time, are fine).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIRST_PARTY = ("annotation", "modelloop", "training", "morale", "frontend")
MORALE_SHARED = (
    "morale.api.permissions", "morale.api.pagination", "morale.api.filters", "morale.api.fields",
    "morale.api.renderers", "morale.api.schema", "morale.broker",
    "morale.client_ip", "morale.errors", "morale.jobs", "morale.roles", "morale.settings", "morale.text",
)
# Function-level imports of another package that are there on purpose, with the reason.
LAZY_ALLOWED = {
    # Celery's signal handlers run in worker processes after Django is set up; importing
    # the model loop when the Celery app module loads would import models before setup.
    ("morale/celery.py", "modelloop.worker"),
}


@dataclass(frozen=True)
class Import:
    path: str  # module file, relative to the root
    module: str  # what is reached, absolute: "annotation.models.Judgment"
    line: int
    lazy: bool  # inside a function
    statement: str  # the import as written, for the message


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, source: str | None = None) -> list[Import]:
    """Every first-party import in a module, relative imports made absolute."""
    source = path.read_text() if source is None else source
    tree = ast.parse(source)
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: list[Import] = []

    def visit(node, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package[: len(package) - child.level + 1]
                    prefix = ".".join(base + ([child.module] if child.module else []))
                else:
                    prefix = child.module or ""
                # "from x import y": y is the submodule x.y or a name defined in x; either way
                # x.y says what is reached ("from modelloop import selectors" reaches selectors).
                names = [f"{prefix}.{alias.name}" if alias.name != "*" else prefix for alias in child.names]
            for name in names:
                if name.split(".")[0] in FIRST_PARTY:
                    found.append(Import(str(path.relative_to(ROOT)), name, child.lineno, lazy, ast.unparse(child)))
            visit(child, inner)

    visit(tree, False)
    return found


def _under(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def violations(imports: list[Import]) -> list[str]:
    """One line per import statement that breaks a rule (the module docstring)."""
    problems: list[str] = []
    for imp in imports:
        here = imp.path.replace("/", ".").removesuffix(".py").removesuffix(".__init__")
        top, target_top = here.split(".")[0], imp.module.split(".")[0]
        where = f"{imp.path}:{imp.line} ({imp.statement})"
        if "migrations" in here.split("."):
            continue  # migrations name models by string; the ones that import code are data migrations
        if top == "training" and target_top == "annotation" and not _under(
            imp.module, "annotation.dataset", "annotation.models.DatasetExport"
        ):
            problems.append(f"{where}: training reads annotation only through annotation.dataset")
        if top == "modelloop" and target_top == "annotation" and not _under(imp.module, "annotation.models"):
            problems.append(f"{where}: modelloop reads annotation only through annotation.models")
        if top == "annotation" and not _under(here, "annotation.research"):
            if target_top == "training":
                problems.append(f"{where}: only annotation.research reads training")
            if target_top == "modelloop" and not _under(imp.module, "modelloop.selectors", "modelloop.services"):
                problems.append(f"{where}: annotation uses modelloop through its selectors and services only")
        if _under(here, "annotation.dataset.format", "annotation.dataset.selection") and (
            _under(imp.module, "annotation.models") or target_top in ("modelloop", "training")
        ):
            problems.append(f"{where}: the dataset format and selection rule touch no ORM")
        if _under(here, *MORALE_SHARED) and (
            target_top in ("annotation", "modelloop", "training")
        ):
            problems.append(f"{where}: morale's shared pieces import no app")
        lazy_ok = any(imp.path == path and _under(imp.module, module) for path, module in LAZY_ALLOWED)
        if imp.lazy and target_top != top and not lazy_ok:
            problems.append(f"{where} inside a function: a hidden dependency; import it at module level")
    return list(dict.fromkeys(problems))


def project_modules() -> list[Path]:
    return sorted(p for top in FIRST_PARTY for p in (ROOT / top).rglob("*.py"))


def test_every_import_follows_the_dependency_direction():
    found = [imp for path in project_modules() for imp in imports_of(path)]
    assert len(found) > 100  # the reader sees the project's imports
    assert violations(found) == []


def test_the_checker_refuses_a_forbidden_import():
    """A sample of each rule: the checker must catch it (else the test above proves nothing)."""
    samples = {
        "training/services.py": "from annotation.models import Judgment\n",
        "modelloop/services/queue.py": "from annotation import services\n",
        "annotation/views/rating.py": "from training.models import TrainingRun\nfrom modelloop.models import Prediction\n",
        "annotation/dataset/format.py": "from annotation.models import Context\n",
        "morale/api/permissions.py": "from annotation.api.audience import for_researcher\n",
        "annotation/services/content.py": "def f():\n    from modelloop import services\n",
    }
    problems = []
    for path, source in samples.items():
        problems += violations(imports_of(ROOT / path, source))
    assert len(problems) == 7, problems
    allowed = imports_of(ROOT / "training/data.py", "from annotation.dataset.format import iter_export\n")
    allowed += imports_of(ROOT / "annotation/research/agreement.py", "from training.models import TrainingRun\n")
    allowed += imports_of(ROOT / "annotation/services/content.py", "def f():\n    from . import tasks\n")
    assert violations(allowed) == []
