"""Shared test helpers: deterministic seeds and running code in the other Keras flavour."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_python(
    code_or_args: list[str] | str, flavour: str = "keras3", timeout: int = 900, env_extra: dict | None = None
) -> subprocess.CompletedProcess:
    """Run ``python -c code`` (str) or ``python args...`` (list) in a fresh process of ``flavour``."""
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["VISION_KERAS"] = flavour
    env["PYTHONPATH"] = str(ROOT)
    env.update(env_extra or {})
    args = ["-c", code_or_args] if isinstance(code_or_args, str) else code_or_args
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def last_json_line(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    assert lines, f"no JSON result in output:\n{stdout[-3000:]}"
    return json.loads(lines[-1])


@pytest.fixture(autouse=True)
def _seed():
    from vision_core.backend import keras

    keras.utils.set_random_seed(1234)
