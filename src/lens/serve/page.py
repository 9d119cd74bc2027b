"""The web page at `/`: one static HTML file (inline CSS and JS, no CDN: it must work offline)."""

from __future__ import annotations

from functools import cache
from importlib.resources import files


@cache
def index_html() -> str:
    return files("lens.serve").joinpath("static/index.html").read_text(encoding="utf-8")
