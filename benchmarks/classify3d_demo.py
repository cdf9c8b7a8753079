"""The classify app's volume ResNets on the built-in NIfTI volume demo, trained, shipped and explained (JSON out).

For each network of ``--nets`` (default: all three), each step its own ``python -m apps.classify`` process in
a fresh project folder ``<project>/<net>``:

1. ``train --preset volumes_<net>`` (quarter width, 16x64x64 volumes of 300 generated patients whose 3D
   structure sets the class; the data generated afresh, timed with the training).
2. ``qat``, ``export --format float32 int8`` and ``eval --model`` on the float32, int8 PTQ and int8 QAT
   TFLite files: the same evaluator as the float model, and each file's top-1 agreement with float32.
3. ``explain`` on ``--explain-count`` evenly spaced validation volumes: Grad-CAM, integrated gradients,
   saliency and 3D occlusion of the float model, and the agreement of its occlusion maps with the QAT int8
   file's (mean and median Spearman rank correlation over the voxels, mean top-10 % overlap).

Issue #34 asks that the (2+1)D and mixed-convolution models train on a generated volume dataset and ship
all-int8 (the export's audit), and for the float/int8 explanation agreement. Quick check of the script::

    python benchmarks/classify3d_demo.py --nets mc3_18 --qat-steps 2 --explain-count 1 --out /tmp/c3d.json -- \\
        --epochs 1 --steps 2 --demo-patients 30 --volume-shape 4,16,16

    python benchmarks/classify3d_demo.py [--nets mc3_18 r2plus1d_18 r3d_18] [--explain-count 8] [-- train flags]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from app_process import DEMO_FORMS, demo_run, run_app, write_result
from classify_demo import top1_agreements
from machine import machine_info

from vision_core.backbones.resnet3d import VOLUME_RESNETS

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "classify3d_demo.json"
HEADLINE = ("roc_auc", "roc_auc_ci", "top1", "balanced_accuracy", "f1", "ece", "samples")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nets", nargs="+", choices=VOLUME_RESNETS, default=list(VOLUME_RESNETS))
    parser.add_argument(
        "--project",
        type=Path,
        default=Path("/tmp/classify3d-demo-benchmark"),
        help="folder for the runs, one per network (default: /tmp/classify3d-demo-benchmark)",
    )
    parser.add_argument("--qat-steps", type=int, help="QAT fine-tune steps (default: the preset's)")
    parser.add_argument("--explain-count", type=int, default=8, help="validation volumes explained (default: 8)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"JSON output (default: {OUT.relative_to(ROOT)})")
    parser.add_argument("train_flags", nargs="*", help="extra flags for train after --, e.g. -- --epochs 4")
    args = parser.parse_args(argv)

    result: dict = {"machine": machine_info(), "train_flags": args.train_flags, "runs": {}}
    files = {form: f"classify_{suffix}.tflite" for form, suffix in DEMO_FORMS.items()}
    for net in args.nets:
        net_args = argparse.Namespace(
            project=args.project / net,
            qat_steps=args.qat_steps,
            train_flags=["--preset", f"volumes_{net}", *args.train_flags],
        )
        shipped = demo_run("classify", net_args, HEADLINE)
        shipped.pop("machine")
        run = net_args.project / "demo"
        shipped["agreement_with_float32"] = top1_agreements(run, files)
        shipped["qat_roc_auc_delta"] = shipped["forms"]["int8_qat_tflite"]["roc_auc"] - shipped["float"]["roc_auc"]
        seconds, stdout = run_app("apps.classify", "explain", "--run", str(run), "--count", str(args.explain_count))
        shipped["explain"] = {"seconds": round(seconds, 1), **json.loads(stdout)["compare"]}
        print(f"{net}: explain {shipped['explain']}", flush=True)
        result["runs"][f"volumes_{net}"] = shipped
    result["summary"] = {
        name: {
            "train_minutes": r["train"]["wall_minutes"],
            "roc_auc": r["float"]["roc_auc"],
            "qat_roc_auc_delta": r["qat_roc_auc_delta"],
            "qat_agreement": r["agreement_with_float32"]["int8_qat_tflite"],
            "explain_spearman_median": r["explain"]["spearman_median"],
        }
        for name, r in result["runs"].items()
    }
    write_result(result, args.out, ("summary",))
    return result


if __name__ == "__main__":
    main()
