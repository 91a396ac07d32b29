"""Django's staticfiles app, told never to collect an HTML page.

Static files are libraries, styles and scripts; a page among them (a console library's demo that takes
its target from the URL) would be served from our origin (SECURITY.md rule 10). bin/copy-static copies
none; this keeps one that slipped into static/ anyway out of STATIC_ROOT, which WhiteNoise serves.
"""

from __future__ import annotations

from django.contrib.staticfiles.apps import StaticFilesConfig


class VmportalStaticFilesConfig(StaticFilesConfig):
    ignore_patterns = [*StaticFilesConfig.ignore_patterns, "*.html", "*.htm"]
