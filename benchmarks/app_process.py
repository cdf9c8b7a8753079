"""Run an app's commands the way a user does, each its own ``python -m`` process from the repository root."""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from machine import machine_info

from vision_core.storage.atomic import write_atomic

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


def demo_arguments(
    description: str, app: str, default_qat_steps: int, out: Path, argv: list[str] | None = None
) -> argparse.Namespace:
    """The shared options of a demo benchmark (``--project``, ``--qat-steps``, ``--out``, extra train flags)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    project = Path(f"/tmp/{app}-demo-benchmark")
    parser.add_argument(
        "--project", type=Path, default=project, help=f"folder for the run and the generated data (default: {project})"
    )
    parser.add_argument(
        "--qat-steps", type=int, help=f"QAT fine-tune steps (default: the preset's, {default_qat_steps})"
    )
    parser.add_argument("--out", type=Path, default=out, help=f"JSON output (default: {out.relative_to(ROOT)})")
    parser.add_argument("train_flags", nargs="*", help="extra flags for train after --, e.g. -- --epochs 1")
    return parser.parse_args(argv)


DEMO_FORMS = {"float32_tflite": "float32", "int8_ptq_tflite": "int8", "int8_qat_tflite": "int8_qat"}


def demo_run(app: str, args: argparse.Namespace, headline_keys: tuple[str, ...]) -> dict:
    """``python -m apps.<app> train`` with no config arguments in a fresh ``args.project`` (the demo data
    generated afresh, timed: a newcomer's first run pays it), then :func:`ship_and_score` of the
    ``<app>_<form>.tflite`` files of :data:`DEMO_FORMS`. Returns ``{"machine", "train_flags", "train",
    "float", "qat", "export", "forms"}`` with the ``headline_keys`` metrics of the trained model and of
    each file."""
    module = f"apps.{app}"
    files = {form: f"{app}_{suffix}.tflite" for form, suffix in DEMO_FORMS.items()}

    def headline(metrics: dict) -> dict:
        return {key: metrics[key] for key in headline_keys}

    result: dict = {"machine": machine_info(), "train_flags": args.train_flags}
    demo_data = args.project / f"{app}-demo-data"
    if demo_data.exists():
        shutil.rmtree(demo_data)
    train = ["train", "--project", str(args.project), "--name", "demo", "--exist-ok", "--demo-dir", str(demo_data)]
    result["train"] = timed_app(module, *train, *args.train_flags)
    run = args.project / "demo"
    trained = json.loads((run / "metrics.json").read_text())
    result["train"].update(epochs=trained["epochs"], best_epoch=trained["best_epoch"])
    result["float"] = headline(trained["metrics"])
    print(f"train: {result['train']['wall_minutes']:.1f} min", flush=True)
    shipped = ship_and_score(module, run, files, args.qat_steps)
    result.update(qat=shipped["qat"], export=shipped["export"])
    result["forms"] = {form: headline(metrics) for form, metrics in shipped["forms"].items()}
    return result


def write_result(result: dict, out: Path, summary: tuple[str, ...]) -> None:
    """The JSON (with the load average at the end) to ``out``; ``summary`` keys printed."""
    result["machine"]["load_average_end"] = list(os.getloadavg())
    write_atomic(out, json.dumps(result, indent=2, default=float).encode())
    print(json.dumps({key: result[key] for key in summary}, indent=2, default=float))
