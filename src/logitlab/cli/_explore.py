"""``logitlab explore``: one self-contained HTML page (no network, no CDN)."""

from __future__ import annotations

from importlib import resources

from .._io import atomic_write


def write_explorer(path):
    """Write the explorer page to ``path`` atomically; returns the path."""
    html = resources.files("logitlab.cli").joinpath("explore.html").read_text(encoding="utf-8")
    with atomic_write(path, "w", encoding="utf-8") as fh:
        fh.write(html)
    return str(path)
