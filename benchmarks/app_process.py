"""Run an app's commands the way a user does, each its own ``python -m`` process from the repository root."""

from __future__ import annotations

import json
import resource
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


def timed_app(module: str, *args: str) -> dict:
    """``python -m module args``: its wall and CPU seconds (the process and its children; on a shared machine
    the CPU share falls below the cores' count)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    seconds, _ = run_app(module, *args)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "wall_seconds": round(seconds, 1),
        "wall_minutes": round(seconds / 60, 2),
        "cpu_seconds": round(cpu, 1),
        "cpu_share_of_one_core": f"{100 * cpu / seconds:.0f}%",
    }


def ship_and_score(module: str, run: Path, files: dict[str, str], qat_steps: int | None = None) -> dict:
    """``qat``, ``export --format float32 int8`` and ``eval --model`` of each exported file of ``run``
    (``files``: {form: file name in ``exports/``}): ``{"qat": timing + steps and losses, "export": timing,
    "forms": {form: metrics of its eval}}``."""
    qat = ["qat", "--run", str(run)] + ([] if qat_steps is None else ["--steps", str(qat_steps)])
    result = {"qat": timed_app(module, *qat)}
    report = json.loads((run / "qat" / "report.json").read_text())
    result["qat"].update(steps=report["steps"], first_loss=report["first_loss"], last_loss=report["last_loss"])
    result["export"] = timed_app(module, "export", "--run", str(run), "--format", "float32", "int8", "--no-score")
    result["forms"] = {}
    for form, name in files.items():
        timed_app(module, "eval", "--run", str(run), "--model", str(run / "exports" / name))
        result["forms"][form] = json.loads((run / f"eval_{name}.json").read_text())["metrics"]
    return result
