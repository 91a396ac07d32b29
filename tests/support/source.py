"""The product's own source, for the tests that read it (imports, threads, audit writers, dependencies)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT_PACKAGES = ("accounts", "audit", "consoles", "domains", "lab", "networks", "people", "storage", "vmportal")


def product_files(*, migrations: bool = True) -> Iterator[Path]:
    """Every Python file of the product's packages, in a stable order."""
    for package in PRODUCT_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if migrations or "migrations" not in path.relative_to(ROOT).parts:
                yield path
