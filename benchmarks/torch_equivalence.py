"""Max abs error of converted PyTorch checkpoints against the source framework, per family (JSON out).

The tiny random-weight checkpoints under tests/fixtures/pretrained/ (written by tools/torch_reference.py
with torch, timm and the official EMOv2, RevCol and vovnet-detectron2 code) are converted onto our
backbones and run on the stored input; every output (logits, C2..C5) is compared with the source
framework's. Also checks that the tensor names and shapes of every published checkpoint in the
manifests map onto our backbone's variables. Nothing here needs torch, ImageNet or the network.

    PYTHONPATH=. .venv/bin/python benchmarks/torch_equivalence.py [--out benchmarks/results/torch_equivalence.json]
        [--full-size DIR]

``--full-size DIR`` also compares published architectures at full size and 224 px (random weights;
``/work/torchenv/bin/python tools/torch_reference.py --sources SRC --out /tmp/x --full-size DIR`` writes
them, some 500 MB, so they are not fixtures).
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

import numpy as np
from machine import machine_info
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from torch_reference_cases import (  # noqa: E402
    CASES,
    FIXTURES,
    PUBLISHED,
    SHAPE,
    TOLERANCE,
    compare,
    max_abs_errors,
    our_outputs,
    placeholder,
)

from vision_core.backbones import build_backbone  # noqa: E402
from vision_core.backbones.torch_layouts import convert, exact_source_options  # noqa: E402
from vision_core.storage.atomic import write_atomic  # noqa: E402
from vision_core.storage.weights import variables_by_path  # noqa: E402

FAMILIES = {
    "timm_resnet_bottleneck": "ResNet v1.5 (timm, bottleneck)",
    "timm_resnet_basic": "ResNet v1.5 (timm, basic block)",
    "timm_resnet_d": "ResNet-D (timm)",
    "timm_mobilenet_v2": "MobileNetV2 (timm)",
    "timm_ese_vovnet": "ese-VoVNet (timm)",
    "timm_ese_vovnet_dw": "ese-VoVNet DW (timm)",
    "detectron2_vovnet": "VoVNetV2 (official vovnet-detectron2)",
    "official_emov2": "EMOv2 (official)",
    "official_revcol": "RevCol (official)",
}


def manifest_coverage() -> dict[str, dict]:
    """For each published checkpoint: how many of its tensors and of our variables map, and shape mismatches."""
    with gzip.open(FIXTURES / "manifests.json.gz", "rt") as f:
        manifests = json.load(f)
    coverage = {}
    for name in tqdm(sorted(PUBLISHED), desc="published checkpoints"):
        backbone, options, has_head = PUBLISHED[name]
        model = build_backbone(backbone, SHAPE, 1000 if has_head else None, **options)
        shapes = {path: tuple(v.shape) for path, v in variables_by_path(model).items()}
        tensors = {key: placeholder(shape) for key, shape in manifests[name].items()}
        weights = convert(backbone, options, list(shapes), tensors, name)
        coverage[name] = {
            "backbone": backbone,
            "options": options,
            "checkpoint_tensors": len(tensors),
            "variables": len(shapes),
            "variables_mapped": len(weights),
            "shape_mismatches": sorted(p for p in shapes if weights[p].shape != shapes[p]),
        }
    return coverage


def full_size_errors(folder: Path) -> dict[str, dict]:
    """Max abs errors of the full-size random-weight checkpoints ``tools/torch_reference.py --full-size`` wrote into
    ``folder`` (published architectures at 224 px), each built with the options that match its source."""
    images = np.load(folder / "inputs_224.npz")["images"]
    errors = {}
    names = [n for n in sorted(PUBLISHED) if (folder / f"{n}_outputs.npz").is_file()]
    for name in tqdm(names, desc="full-size checkpoints"):
        backbone, options, has_head = PUBLISHED[name]
        options = {**options, **exact_source_options(backbone)}
        checkpoint = next(p for p in folder.glob(f"{name}.*") if p.suffix in (".safetensors", ".pth"))

        def build(classes, backbone=backbone, options=options):
            return build_backbone(backbone, tuple(images.shape[2:]) + (3,), classes, **options)

        ours = our_outputs(build, backbone, options, has_head, checkpoint, images)
        reference = dict(np.load(folder / f"{name}_outputs.npz"))
        found = compare(ours, reference, name)
        errors[name] = {"backbone": backbone, "options": options, "max_abs_error": found, "worst": max(found.values())}
    return errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "torch_equivalence.json")
    parser.add_argument(
        "--full-size",
        type=Path,
        help="folder written by tools/torch_reference.py --full-size: also compare published architectures at "
        "full size (random weights, 224 px)",
    )
    args = parser.parse_args()
    errors = {case: max_abs_errors(case) for case in tqdm(sorted(CASES), desc="equivalence")}
    result = {
        "what": "max abs error of converted tiny random-weight checkpoints vs the source framework's outputs",
        "tolerance": TOLERANCE,
        "input": "1 x 64 x 64 x 3, standard normal (tests/fixtures/pretrained/inputs.npz)",
        "sources": json.loads((FIXTURES / "SOURCES.json").read_text()),
        "families": {
            case: {"source": FAMILIES[case], "max_abs_error": e, "worst": max(e.values())} for case, e in errors.items()
        },
        "all_within_tolerance": all(max(e.values()) <= TOLERANCE for e in errors.values()),
        "worst": float(np.max([max(e.values()) for e in errors.values()])),
        "published_checkpoints": manifest_coverage(),
        "full_size": full_size_errors(args.full_size) if args.full_size else "not run (needs --full-size)",
        "machine": machine_info(),
    }
    write_atomic(args.out, (json.dumps(result, indent=1) + "\n").encode())
    print(json.dumps({case: v["worst"] for case, v in result["families"].items()}, indent=1))


if __name__ == "__main__":
    main()
