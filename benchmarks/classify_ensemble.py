"""Ensembles of fundus-demo runs against their members: ROC AUC of each, same evaluator (JSON out).

Trains ``--members`` ResNet-18 runs of the ``fundus_resnet18`` preset that differ only in their seed (short
trainings: ``--epochs``, ``--demo-patients``), each as its own ``python -m apps.classify`` process, then makes
one ``ensemble --combine mean`` and one ``--combine vote`` run of them and exports each ensemble's float32
and post-training int8 TFLite file, scored by the same evaluator (``exports/forms.json``).

    python benchmarks/classify_ensemble.py [--members 3] [--epochs 2] [--demo-patients 500] [--project DIR]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from app_process import run_app
from machine import machine_info

from vision_core.storage.atomic import write_atomic

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "classify_ensemble.json"
KEYS = ("roc_auc", "top1", "balanced_accuracy", "ece", "agreement")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=3, help="runs to train and combine (default: 3)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of each member (default: 2)")
    parser.add_argument("--demo-patients", type=int, default=500, help="fundus demo patients (default: 500)")
    parser.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples of the CIs (default: 200)")
    parser.add_argument(
        "--project", type=Path, default=Path("/tmp/classify-ensemble-benchmark"), help="folder of the runs"
    )
    parser.add_argument("--out", type=Path, default=OUT, help=f"JSON output (default: {OUT.relative_to(ROOT)})")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep the runs and exports left in --project by an earlier call (default: off)",
    )
    args = parser.parse_args(argv)

    common = [
        "--demo-dir",
        str(args.project / "classify-fundus"),
        "--demo-patients",
        str(args.demo_patients),
        "--bootstrap",
        str(args.bootstrap),
    ]
    settings = {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()}
    result: dict = {"machine": machine_info(), "settings": settings}
    members = []
    for seed in range(1, args.members + 1):
        name = f"member{seed}"
        members.append(str(args.project / name))
        if args.reuse and (args.project / name / "metrics.json").is_file():
            continue
        seconds, _ = run_app(
            "apps.classify",
            "train",
            "--project",
            str(args.project),
            "--name",
            name,
            "--exist-ok",
            "--epochs",
            str(args.epochs),
            "--seed",
            str(seed),
            *common,
        )
        result.setdefault("train_seconds", {})[name] = round(seconds, 1)
    for combine in ("mean", "vote"):
        name = f"ensemble_{combine}"
        run = args.project / name
        if not (args.reuse and (run / "exports" / "forms.json").is_file()):
            make_and_export(args, members, combine, name)
        rows = json.loads((run / "ensemble.json").read_text())["forms"]
        forms = json.loads((run / "exports" / "forms.json").read_text())
        result[name] = {
            "members": {row["form"]: {k: row.get(k) for k in KEYS} for row in rows},
            "forms": {row["form"]: {k: row.get(k) for k in KEYS} for row in forms},
        }
    write_atomic(args.out, json.dumps(result, indent=2).encode())
    print(json.dumps(result, indent=2))
    return result


def make_and_export(args: argparse.Namespace, members: list[str], combine: str, name: str) -> None:
    """``ensemble`` of ``members`` into ``--project/name``, then its float32 and int8 exports, scored."""
    run_app(
        "apps.classify", "ensemble", *members, "--combine", combine, "--project", str(args.project),
        "--name", name, "--exist-ok", "--bootstrap", str(args.bootstrap),
    )  # fmt: skip
    run_app(
        "apps.classify", "export", "--run", str(args.project / name), "--format", "float32", "int8",
        "--saved-models", str(args.project / "saved_models"),
    )  # fmt: skip


if __name__ == "__main__":
    main()
