"""Post-training int8 agreement of every backbone's features with float (JSON out).

The same measurement as the suite's int8 test, for every registered backbone (RevCol-S
and -B included, whose conversions are too slow for CI): train the shapes classifier
for a few Adam steps (``train_briefly``), load its weights into the feature model,
convert to a full-int8 TFLite calibrated on 32 training images, audit that every op is
int8, and report the cosine of C2..C5 to float on held-out shapes. With ``--qat`` also
the suite's QAT check: the tf_keras twin, TF-MOT quantization with calibrated ranges and
the conversion of the QAT classifier to an audited all-int8 TFLite (no fine-tune steps;
``benchmarks/backbone_int8.py`` measures fine-tuned accuracy). Results are rewritten
after every backbone.

    python benchmarks/backbone_ptq_agreement.py [NAMES...] [--size 64] [--steps 5] [--qat]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from tqdm import tqdm

from tflite.audit import require_int8
from vision_core.backbones import list_backbones
from vision_core.quant import qat_job
from vision_core.quant.int8_check import (
    ptq_feature_agreement,
    shapes_data,
    train_briefly,
    write_qat_spec,
)
from vision_core.storage.atomic import write_atomic
from vision_core.storage.weights import weights_by_path


def qat_conversion(classifier, name: str, size: int, x, labels, probe) -> dict:
    """Run the QAT job with no fine-tune steps; the op types of the int8 TFLite it audited."""
    with tempfile.TemporaryDirectory(prefix="backbone_qat_") as tmp:
        spec = write_qat_spec(Path(tmp), classifier, name, size, x, labels, probe[:4], steps=0)
        result = qat_job.launch(spec, timeout=4 * 3600)
    return {
        "qat_int8_op_types": sorted({op for op, _, _ in result["ops"]}),
        "qat_calibrated_ranges": result["calibrated_ranges"],
        "qat_seconds": result["seconds"],
    }


def measure(name: str, size: int, steps: int, qat: bool) -> dict:
    start = time.perf_counter()
    classifier, losses, x, labels = train_briefly(name, size, steps=steps)
    probe, _ = shapes_data(16, size, seed=99)
    cosines, flatbuffer = ptq_feature_agreement(name, size, weights_by_path(classifier), x[:32], probe)
    ops = require_int8(flatbuffer)
    qat_record = qat_conversion(classifier, name, size, x, labels, probe) if qat else {}
    return {
        "backbone": name,
        "input_size": size,
        "train_steps": steps,
        "train_losses": [round(v, 4) for v in losses],
        "feature_cosine": {k: round(v, 5) for k, v in sorted(cosines.items())},
        "min_cosine": round(min(cosines.values()), 5),
        "int8_op_types": sorted({op.op for op in ops}),
        **qat_record,
        "seconds": round(time.perf_counter() - start, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="backbones (default: all)")
    parser.add_argument("--size", type=int, default=64, help="input size (default: 64)")
    parser.add_argument("--steps", type=int, default=5, help="Adam steps before conversion (default: 5)")
    parser.add_argument(
        "--qat", action="store_true", help="also quantize with TF-MOT and convert the QAT classifier to all-int8"
    )
    parser.add_argument("--out", default="benchmarks/results/backbone_ptq_agreement.json", help="JSON output file")
    args = parser.parse_args()
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else []
    for name in tqdm(args.names or list_backbones(), desc="backbones", file=sys.stderr):
        result = measure(name, args.size, args.steps, args.qat)
        results = [r for r in results if r["backbone"] != name] + [result]
        write_atomic(out, json.dumps(results, indent=2).encode())
        print(json.dumps({k: result[k] for k in ("backbone", "feature_cosine", "seconds")}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
