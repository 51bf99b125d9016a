"""Debian's chromium through Playwright, as every browser test, the screenshots and the UI
benchmark launch it (never a downloaded build). The tests reach it through the `browser`
fixture in tests/conftest.py, which installs it when missing or fails saying why."""

from __future__ import annotations

import os
import shutil
import subprocess

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def ensure_chromium() -> str | None:
    """Install Debian's chromium when it is missing (as scripts/system.sh does). Returns why it
    cannot be had, or None once /usr/bin/chromium exists."""
    if os.path.exists(CHROMIUM):
        return None
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        return "chromium is not installed and apt-get is not usable here"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        if done.returncode:
            return f"installing Debian's chromium failed: {done.stderr.strip()[-300:]}"
    return None if os.path.exists(CHROMIUM) else f"chromium installed but {CHROMIUM} is missing"


def launch(playwright):
    """A headless chromium from a started `sync_playwright()`."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
