"""Render a local HTML file in headless Chromium and collect what its console said.

Used by the report tests (evaluation, monitoring) to prove a page opens in a real browser with
no console errors. Chromium writes each console message to stderr with ``--enable-logging``
(``...:CONSOLE:12] "Uncaught Error: boom", source: file:///page.html (12)``); that log does
not carry the message's level, so every message counts: mlsd's pages run no JavaScript, so
any console output at all means something is wrong.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
)
_CONSOLE = re.compile(r":CONSOLE[:(]\d+\)?\] \"(.*?)\", source: (\S*) \((\d+)\)", re.S)


@dataclass
class Rendered:
    """What Chromium made of a page: the DOM after scripts ran, and its console messages."""

    dom: str
    console: list[str]


def find_chromium() -> str | None:
    """The path of a Chromium-family browser, or None."""
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def require_chromium() -> str:
    """The browser's path; skips the calling test, saying why, when there is none."""
    path = find_chromium()
    if path is None:
        pytest.skip(
            "headless Chromium is not installed (Debian: `apt-get install chromium`; "
            "`make test` installs it when run as root), so the page cannot be rendered"
        )
    return path


def render(page: str | Path, timeout: float = 60.0) -> Rendered:
    """Load ``page`` (a local file) in headless Chromium; returns the DOM and console lines."""
    browser = require_chromium()
    url = Path(page).resolve().as_uri()
    with tempfile.TemporaryDirectory(prefix="mlsd-chromium-") as profile:
        run = subprocess.run(
            [browser, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    if run.returncode != 0:
        raise RuntimeError(f"chromium exited with {run.returncode}: {run.stderr[-2000:]}")
    console = [
        f"{message} ({source}:{line})" for message, source, line in _CONSOLE.findall(run.stderr)
    ]
    return Rendered(dom=run.stdout, console=console)
