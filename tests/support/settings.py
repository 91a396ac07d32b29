"""vmportal/settings.py read afresh with given environment variables, for tests of settings that only exist when
a deployment sets them (LDAP, OpenID Connect): what the test then copies into Django's settings is what that
environment would configure."""

from __future__ import annotations

import os
import runpy
from pathlib import Path
from typing import Any

SETTINGS_FILE = Path(__file__).resolve().parents[2] / "vmportal" / "settings.py"


def settings_from_env(**variables: str) -> dict[str, Any]:
    saved = dict(os.environ)
    os.environ.update(variables)
    try:
        return runpy.run_path(str(SETTINGS_FILE))
    finally:
        os.environ.clear()
        os.environ.update(saved)


def configure(settings: Any, prefixes: tuple[str, ...], **variables: str) -> None:
    """Sets on pytest-django's `settings` the settings whose names start with `prefixes`, and the authentication
    backends, as the environment `variables` makes them."""
    for name, value in settings_from_env(**variables).items():
        if name.startswith(prefixes) or name == "AUTHENTICATION_BACKENDS":
            setattr(settings, name, value)
