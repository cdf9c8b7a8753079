"""Run an app's command the way a user does, as its own ``python -m`` process from the repository root."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_app(module: str, *args: str) -> tuple[float, str]:
    """``python -m module args`` from the repository root: ``(seconds, stdout)``; exits naming it on failure."""
    start = time.perf_counter()
    process = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=None
    )
    seconds = time.perf_counter() - start
    if process.returncode != 0:
        raise SystemExit(f"{module} {' '.join(args)} failed with exit {process.returncode}")
    return seconds, process.stdout
