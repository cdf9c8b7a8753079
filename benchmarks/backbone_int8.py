"""Int8 agreement of every backbone after brief training on built-in shapes (JSON out).

For each backbone: train the 4-class classifier for ``--steps`` steps, convert its
feature model to full int8 (post-training) and measure cosine per feature map, then run
QAT in a tf_keras process and compare the QAT int8 classifier with the float one
(logit cosine, top-1 agreement) on held-out images.

    python benchmarks/backbone_int8.py [NAMES...] [--size 96] [--steps 20] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tflite.runtime import TFLiteModel
from vision_core.backbones import list_backbones
from vision_core.backbones.int8_check import ptq_feature_agreement, shapes_data, train_briefly, write_qat_spec
from vision_core.quant import qat_job
from vision_core.quant.agreement import cosine_similarity
from vision_core.weights import weights_by_path


def measure(name: str, size: int, steps: int, qat_steps: int, work: Path) -> dict:
    start = time.perf_counter()
    classifier, losses, x, labels = train_briefly(name, size, steps)
    probe, _ = shapes_data(64, size, seed=99)
    cosines, _ = ptq_feature_agreement(name, size, weights_by_path(classifier), x[:64], probe[:16])
    spec = write_qat_spec(work / name, classifier, name, size, x, labels, probe[:4], steps=qat_steps)
    qat = qat_job.launch(spec)
    float_logits = np.asarray(classifier.predict(probe, verbose=0))
    qat_logits = TFLiteModel(spec.parent / "qat" / "qat_int8.tflite")(probe)["predictions"]
    return {
        "backbone": name,
        "input_size": size,
        "train_loss_first_last": [losses[0], losses[-1]],
        "ptq_int8_feature_cosine": cosines,
        "qat_int8_logit_cosine": cosine_similarity(float_logits, qat_logits),
        "qat_int8_top1_agreement": float(np.mean(float_logits.argmax(1) == qat_logits.argmax(1))),
        "qat_int8_ops": qat["ops"],
        "seconds": round(time.perf_counter() - start, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="backbones (default: all)")
    parser.add_argument("--size", type=int, default=96, help="input size (default: 96)")
    parser.add_argument("--steps", type=int, default=20, help="float training steps (default: 20)")
    parser.add_argument("--qat-steps", type=int, default=10, help="QAT fine-tune steps (default: 10)")
    parser.add_argument("--out", default="benchmarks/results/backbone_int8.json", help="JSON output file")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="backbone_int8_") as tmp:
        for name in tqdm(args.names or list_backbones(), desc="backbones", file=sys.stderr):
            results.append(measure(name, args.size, args.steps, args.qat_steps, Path(tmp)))
            print(json.dumps({k: results[-1][k] for k in ("backbone", "ptq_int8_feature_cosine",
                                                          "qat_int8_logit_cosine", "qat_int8_top1_agreement")}))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
