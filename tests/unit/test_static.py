"""Only the console libraries are served from static/: never a demo page that takes its target from the URL."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.test import Client

BASE_DIR = Path(django_settings.BASE_DIR)
CONSOLE_JS = BASE_DIR / "consoles" / "static" / "consoles" / "console.js"
DEMO_PAGES = ("spice-html5/spice.html", "spice-html5/spice_auto.html", "novnc/vnc.html", "novnc/vnc_lite.html")
IMPORT = re.compile(r"""(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s*)["'](\.{1,2}/[^"']+)["']""", re.M)


def pages_under(directory: Path) -> list[str]:
    return [os.path.join(root, name) for root, _dirs, names in os.walk(directory, followlinks=True)
            for name in names if name.endswith((".html", ".htm"))]


def modules_loaded(entry: Path, root: Path) -> set[Path]:
    """Every file the entry module imports, statically or dynamically, and what those import in turn."""
    seen: set[Path] = set()
    pending = [entry]
    while pending:
        module = pending.pop()
        for specifier in IMPORT.findall(module.read_text(errors="replace")):
            target = (module.parent / specifier).resolve()
            if target not in seen:
                seen.add(target)
                assert target.is_relative_to(root), f"{module} imports {specifier}, outside {root}"
                assert target.is_file(), f"{module.relative_to(root)} imports {specifier}, which was not copied"
                pending.append(target)
    return seen


@pytest.mark.parametrize("library", ["novnc", "spice-html5"])
def test_the_console_library_directories_hold_no_page(library: str):
    directory = BASE_DIR / "static" / library
    assert (directory / ("core/rfb.js" if library == "novnc" else "main.js")).is_file(), "run bin/setup"
    assert pages_under(directory) == []


def test_the_copy_step_copies_what_the_console_loads_and_no_page(tmp_path: Path):
    subprocess.run([str(BASE_DIR / "bin" / "copy-static"), str(tmp_path)], check=True, capture_output=True,
                   timeout=60)
    assert pages_under(tmp_path) == []
    assert (tmp_path / "novnc" / "LICENSE.txt").is_file()
    # console.js and serial.js are served from /static/consoles/, beside the libraries: follow their imports.
    shutil.copytree(CONSOLE_JS.parent, tmp_path / "consoles")
    loaded = {str(path.relative_to(tmp_path)) for path in modules_loaded(tmp_path / "consoles" / "console.js",
                                                                         tmp_path)}
    assert {"novnc/core/rfb.js", "spice-html5/main.js", "spice-html5/thirdparty/rsa.js"} <= loaded
    modules_loaded(tmp_path / "consoles" / "serial.js", tmp_path)
    # The serial console page loads xterm.js and its addons as scripts and a stylesheet.
    serial_page = (BASE_DIR / "templates" / "consoles" / "serial.html").read_text()
    xterm_files = re.findall(r"{% static '(xterm/[^']+)' %}", serial_page)
    assert len(xterm_files) == 4
    assert all((tmp_path / name).is_file() for name in xterm_files), xterm_files
    assert (tmp_path / "xterm" / "LICENSE").is_file()


def test_the_import_walk_notices_a_missing_module(tmp_path: Path):
    """The test above can fail: a module that imports one not copied is reported."""
    (tmp_path / "entry.js").write_text('import RFB from "./core/rfb.js";\nconst m = await import("./lazy.js");\n')
    (tmp_path / "lazy.js").write_text("export default 1;\n")
    with pytest.raises(AssertionError, match=r"imports \./core/rfb\.js, which was not copied"):
        modules_loaded(tmp_path / "entry.js", tmp_path)


def test_a_demo_page_is_not_served_even_if_one_lands_in_static(settings, tmp_path: Path, db: None):
    """Collected and served as the app does (collectstatic, then WhiteNoise over STATIC_ROOT)."""
    stale = tmp_path / "stale-checkout"  # what an older bin/setup left in static/
    for page in DEMO_PAGES:
        (stale / page).parent.mkdir(parents=True, exist_ok=True)
        (stale / page).write_text("<!doctype html><title>demo</title><script>connect(location.search)</script>")
    settings.STATICFILES_DIRS = [*django_settings.STATICFILES_DIRS, stale]
    settings.STATIC_ROOT = tmp_path / "static-root"
    call_command("collectstatic", interactive=False, verbosity=0)

    client = Client()
    for page in DEMO_PAGES:
        assert client.get(f"/static/{page}").status_code == 404, page
    for library in ("spice-html5/main.js", "novnc/core/rfb.js", "consoles/console.js"):
        response = client.get(f"/static/{library}")
        assert response.status_code == 200, library
        assert "script-src 'self';" in response["Content-Security-Policy"]
