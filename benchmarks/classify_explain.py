"""Do a trained classify run's int8 files look where its float model does? Occlusion agreement, JSON out.

Runs ``python -m apps.classify explain`` on ``--count`` evenly spaced validation images of ``--run``
twice: all four methods on the float Keras model compared with the QAT int8 file
(``exports/*_int8_qat.tflite``), then occlusion alone compared with the post-training int8 file
(``exports/*_int8.tflite``). Records each comparison (mean and median Spearman rank correlation, top-10 %
overlap of the float and int8 occlusion maps, and how many int8 maps were constant: probabilities
saturated at the int8 output's 1/256 steps), the wall time, and the machine.

    python benchmarks/classify_explain.py --run runs/classify/exp [--count 32] [-- extra explain flags]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from app_process import run_app
from machine import machine_info

from vision_core.storage.atomic import write_atomic

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "classify_explain.json"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a trained, exported classify run folder")
    parser.add_argument("--count", type=int, default=32, help="validation images explained (default: 32)")
    parser.add_argument(
        "--work", type=Path, default=Path("/tmp/classify-explain-benchmark"), help="explain outputs (default: /tmp/...)"
    )
    parser.add_argument("--out", type=Path, default=OUT, help=f"JSON output (default: {OUT.relative_to(ROOT)})")
    parser.add_argument("explain_flags", nargs="*", help="extra flags for explain after --, e.g. -- --demo-dir D")
    args = parser.parse_args(argv)

    exports = args.run / "exports"
    result: dict = {"machine": machine_info(), "run": str(args.run), "count": args.count, "flags": args.explain_flags}
    forms = {
        "int8_qat": (next(exports.glob("*_int8_qat.tflite")), []),
        "int8_ptq": (next(exports.glob("*_int8.tflite")), ["--methods", "occlusion"]),
    }
    for form, (file, methods) in forms.items():
        flags = ["--count", str(args.count), "--compare", str(file), "--out", str(args.work / form), *methods]
        seconds, stdout = run_app("apps.classify", "explain", "--run", str(args.run), *flags, *args.explain_flags)
        printed = json.loads(stdout)
        result[form] = {"seconds": round(seconds, 1), "images": printed["images"], **printed["compare"]}
        print(f"{form}: {result[form]}", flush=True)
    result["machine"]["load_average_end"] = list(os.getloadavg())
    write_atomic(args.out, json.dumps(result, indent=2, default=float).encode())
    return result


if __name__ == "__main__":
    main()
