"""`GET /`: the dashboard, one HTML page with its script and style inlined from `server/dashboard/`.

The page itself holds no data and is served without a token (so a browser can open it); everything it
shows comes from the `/v1` API, which it calls with the bearer token the user types once (kept in
sessionStorage). Inlining makes `/` the only open path, and lets a strict Content-Security-Policy pin
the one script by its hash.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import Response

DASHBOARD_PATH = "/"


@functools.cache
def page() -> tuple[bytes, str]:
    """The page and its Content-Security-Policy (built once per process)."""
    files = resources.files("boltrl.server.dashboard")
    html = files.joinpath("index.html").read_text("utf-8")
    script = files.joinpath("app.js").read_text("utf-8")
    style = files.joinpath("style.css").read_text("utf-8")
    script_hash = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    style_hash = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    html = html.replace("/*STYLE*/", style).replace("/*SCRIPT*/", script)
    csp = (
        "default-src 'none'; connect-src 'self'; img-src 'self' data:; "
        f"script-src 'sha256-{script_hash}'; style-src 'sha256-{style_hash}'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return html.encode(), csp


def router() -> APIRouter:
    r = APIRouter(tags=["dashboard"])

    @r.get(DASHBOARD_PATH, response_class=Response, include_in_schema=False)
    async def dashboard() -> Response:
        body, csp = page()
        headers = {
            "content-security-policy": csp,
            "x-content-type-options": "nosniff",
            "referrer-policy": "no-referrer",
            "cache-control": "no-cache",
        }
        return Response(body, media_type="text/html; charset=utf-8", headers=headers)

    return r
