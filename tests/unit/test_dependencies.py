"""Every package the product imports is declared, and production needs none of the development tools."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.source import ROOT, product_files


def _top_level_imports() -> dict[str, str]:
    """Top-level module imported -> one file that imports it, over the product's packages."""
    found: dict[str, str] = {}
    for path in product_files():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.partition(".")[0], str(path.relative_to(ROOT)))
    return found


def _locked(name: str) -> set[str]:
    lines = (ROOT / name).read_text().splitlines()
    return {canonicalize_name(re.split(r"[=<>\[ ]", line)[0]) for line in lines
            if line and not line.startswith(("#", "-r"))}


def test_every_third_party_import_is_a_declared_production_dependency():
    declared = {canonicalize_name(Requirement(spec).name)
                for spec in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    distributions = packages_distributions()
    undeclared = {}
    for module, where in _top_level_imports().items():
        if module in sys.stdlib_module_names or (ROOT / module).is_dir() or module == "__future__":
            continue
        names = {canonicalize_name(dist) for dist in distributions.get(module, [])}
        assert names, f"{module} (imported by {where}) comes from no installed distribution"
        if not names & declared:
            undeclared[module] = where
    assert not undeclared, f"imported but not declared in pyproject.toml's dependencies: {undeclared}"


def test_the_production_lock_holds_no_development_tool():
    production, development = _locked("requirements.lock"), _locked("requirements-dev.lock")
    assert {"django", "channels", "daphne", "libvirt-python", "cryptography", "websockify"} <= production
    assert {"pytest", "mypy", "ruff", "playwright", "django-stubs"} <= development
    assert not production & {"pytest", "pytest-django", "mypy", "ruff", "playwright", "django-stubs"}
    assert not production & development
