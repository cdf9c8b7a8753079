"""What every benchmark JSON records about the machine and the code it measured.

Imported by the scripts in this folder (run as ``python benchmarks/<name>.py``, which puts
this folder on ``sys.path``).
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PACKAGES = ("tensorflow", "keras", "ai-edge-litert", "keras-cv")
INT8_DOT_PRODUCT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def machine_info() -> dict:
    """CPU model and int8 dot-product flags, logical CPUs, load average, package versions, git state."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    lines = cpuinfo.splitlines()
    model = next(
        (line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), platform.processor()
    )
    flags = next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), [])
    return {
        "cpu_model": model,
        "logical_cpus": os.cpu_count(),
        "int8_dot_product_flags": sorted(f for f in flags if f in INT8_DOT_PRODUCT_FLAGS),
        "load_average": list(os.getloadavg()),
        "python": platform.python_version(),
        "packages": {name: _version(name) for name in PACKAGES},
        "git": git_state(),
    }


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def git_state() -> dict:
    """HEAD commit and whether the work tree differed from it (tracked changes, untracked Python files)."""

    def run(*args):
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {
        "commit": run("rev-parse", "HEAD"),
        "dirty": bool(run("status", "--porcelain", "--untracked-files=no")),
        "untracked": [
            line[3:]
            for line in run("status", "--porcelain").splitlines()
            if line.startswith("??") and not line.startswith("?? benchmarks/results")
        ],
    }
