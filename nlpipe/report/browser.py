"""Open a report in headless Chromium: its DOM after the page's script ran, or a screenshot.

What the browser tests, the README's screenshot and the scale benchmark use.
"""

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from ..errors import Errors, InputError

NAMES = ("chromium", "chromium-browser", "google-chrome")
# Headless, offline and quiet: no first-run pages, sync, component updates or background fetches.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")
HANG = 300  # seconds after which a render that never finishes is stopped


def find_chromium() -> str | None:
    return next((path for path in map(shutil.which, NAMES) if path), None)


def _render(url: str, *flags: str) -> tuple[str, float]:
    """(stdout, wall seconds) of one headless Chromium run on `url`, in a fresh profile."""
    chromium = find_chromium()
    if chromium is None:
        raise InputError(Errors.E097)
    with tempfile.TemporaryDirectory(prefix="nlpipe-chromium-") as profile:
        started = time.perf_counter()
        try:
            done = subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", *flags, url],
                                  capture_output=True, text=True, timeout=HANG)
        except subprocess.TimeoutExpired:
            raise InputError(Errors.E098.format(url=url, reason=f"no result after {HANG} s")) from None
        seconds = time.perf_counter() - started
    if done.returncode:
        last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        raise InputError(Errors.E098.format(url=url, reason=last))
    return done.stdout, seconds


def page_url(report: str, anchor: str = "") -> str:
    return Path(report).resolve().as_uri() + (f"#{anchor}" if anchor else "")


def dump_dom(report: str, anchor: str = "", settle_ms: int = 0) -> tuple[str, float]:
    """(the serialised DOM once the page loaded, the wall seconds that took) of `report`,
    opened at `#anchor` if given.

    `settle_ms`: virtual milliseconds the page's script may still run after the load
    (`--virtual-time-budget`), for what it renders asynchronously, as a document unpacked on
    opening. Chromium fast-forwards virtual time whenever the page is idle, so this waits for
    the work itself, not for a clock.
    """
    budget = (f"--virtual-time-budget={settle_ms}",) if settle_ms else ()
    return _render(page_url(report, anchor), *budget, "--dump-dom")


def screenshot(report: str, png: str, width: int = 1200, height: int = 1400) -> None:
    _render(page_url(report), f"--screenshot={Path(png).resolve()}", f"--window-size={width},{height}",
            "--hide-scrollbars")
