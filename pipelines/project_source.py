"""The project's own source tree, for what ships it to machines other than this one: Flex
Template launcher images (:mod:`pipelines.flex`), SDK worker images (:mod:`pipelines.container`)
and the sdist Beam's stager builds for workers (:func:`pipelines.runners.project_setup_file`)."""

from __future__ import annotations

import shutil
from pathlib import Path

from connectors.errors import BeamwrightError

PACKAGES = ("pipelines", "transforms", "lineage", "connectors", "templates")
PROJECT_FILES = ("pyproject.toml", "README.md")


class SourceTreeError(BeamwrightError, ValueError):
    """beamwright is not running from a source tree, so there is nothing to copy."""


def source_root() -> Path | None:
    """The tree the packages are imported from (a checkout or an editable install), or None
    for an installed wheel (no ``pyproject.toml`` beside the packages)."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() else None


def copy_project(dest: Path) -> None:
    """``pyproject.toml``, ``README.md`` and the packages into ``dest`` (replaced), without
    caches: what ``pip install dest`` needs."""
    root = source_root()
    if root is None:
        raise SourceTreeError(
            f"no pyproject.toml next to the packages in {Path(__file__).resolve().parent.parent}: "
            "an image needs the project's source",
            hint="run this from a checkout (pip install -e .)",
        )
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for name in PROJECT_FILES:
        shutil.copy2(root / name, dest / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for package in PACKAGES:
        shutil.copytree(root / package, dest / package, ignore=ignore)
