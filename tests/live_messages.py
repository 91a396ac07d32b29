"""What a live socket's message tells the page, read back from its out-of-band swap into plain facts.

The sockets send the pages' own partials as htmx out-of-band swaps (domains.live, domains.consumers);
tests assert on what the page then shows: a row and its HTML, a removal, a usage sample's cells, a host's
banner, the VM page's summary or "gone" notice, its "revoked" notice or "fetch the controls again", a
migration's progress, "fetch the list again", or a page of a longer list's order and footer.
"""

from __future__ import annotations

import html
import re
from typing import Any

_SWAP = re.compile(r'<(\w+) hx-swap-oob="(\w+):([^"]+)">(.*)</\1>', re.DOTALL)
_ID = re.compile(r'\bid=["\']([^"\']+)["\']')


def read(text: str | bytes) -> dict[str, Any]:
    """The facts one message carries, shaped {"type": ..., ...}."""
    if isinstance(text, bytes):
        text = text.decode()
    match = _SWAP.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not an out-of-band swap: {text[:200]!r}")
    _tag, style, target, content = match.groups()
    found = _ID.search(content)
    element_id = found.group(1) if found else None
    if target == "#results tbody" and style == "order":
        return {"type": "order", "ids": _ID.findall(content)}
    if target == "#results tbody" and style == "cells":
        return {"type": "cells", "ids": _ID.findall(content), "html": content.strip()}
    if target == "#list-footer":
        return {"type": "footer", "html": content.strip()}
    if target == "#results tbody":
        return {"type": "row", "id": element_id, "html": content.strip()} if style == "upsert" else \
            {"type": "remove", "id": element_id}
    if target == "#host-banners":
        host = html.unescape(re.search(r'data-host="([^"]*)"', content).group(1))  # type: ignore[union-attr]
        shown = html.unescape(re.sub(r"<[^>]+>", "", content))
        return {"type": "host", "host": host, "reachable": style == "discard",
                "message": shown.removeprefix(f"Host {host}: ")}
    if target == "#results" and style == "refetch":
        return {"type": "refresh"}
    if target == "#summary" and style == "refetch":
        return {"type": "refresh-summary"}
    if target == "#live-indicator":
        return {"type": "indicator", "state": re.search(r'data-live="([^"]*)"', content).group(1)}  # type: ignore[union-attr]
    if target == "#summary":
        return {"type": "gone"} if 'class="message warning gone"' in content else \
            {"type": "summary", "html": content.strip()}
    if target == "#domain-page":
        kind = "revoked" if 'class="message warning revoked"' in content else "rights-changed"
        return {"type": kind, "html": content.strip()}
    if target == "#domain-controls" and style == "refetch":
        return {"type": "refresh-controls"}
    if target == "#migration-slot":
        return {"type": "migration", "id": element_id, "html": content.strip()}
    raise ValueError(f"an out-of-band swap no page expects: {style}:{target}")
