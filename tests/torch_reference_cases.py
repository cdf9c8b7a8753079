"""The tiny PyTorch reference cases of tests/fixtures/pretrained/ and our build of each (tools/torch_reference.py
writes the fixtures; tests/test_torch_checkpoints.py and benchmarks/torch_equivalence.py compare against them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vision_core.backbones import build_backbone
from vision_core.backbones.emov2 import _stages, emov2
from vision_core.backbones.resnet import resnet
from vision_core.backbones.revcol import RevColConfig, revcol
from vision_core.backbones.torch_layouts import convert, family_of
from vision_core.backbones.vovnet import VoVNetSpec, vovnet
from vision_core.storage.torch_files import read_checkpoint
from vision_core.storage.weights import variables_by_path

FIXTURES = Path(__file__).parent / "fixtures" / "pretrained"
TOLERANCE = 1e-4
HEAD_BIAS = {  # the classifier bias of each family's checkpoints: its length is the number of classes
    "resnet": "fc.bias",
    "mobilenet_v2": "classifier.bias",
    "vovnet": "head.fc.bias",
    "emov2": "head.bias",
    "revcol": "cls_blocks.3.classifier.1.bias",
}
TINY_VOVNET = VoVNetSpec((8, 8, 16), (8, 8, 8, 8), (16, 16, 24, 24), 2, (1, 1, 2, 2), True, True, False)
TINY_VOVNET_DW = VoVNetSpec((8, 8, 8), (8, 12, 12, 16), (16, 16, 24, 24), 2, (1, 1, 1, 1), True, True, True)
SHAPE = (64, 64, 3)

# case: (our backbone name, conversion options, builder of the same tiny network: classes -> model, has a head)
CASES = {
    "timm_resnet_bottleneck": (
        "resnet50",
        {},
        lambda n: resnet(SHAPE, (1, 1, 1, 1), True, "resnet50", n, widths=(8, 8, 16, 16), explicit_padding=True),
        True,
    ),
    "timm_resnet_basic": (
        "resnet18",
        {},
        lambda n: resnet(SHAPE, (1, 1, 1, 1), False, "resnet18", n, widths=(8, 8, 16, 16), explicit_padding=True),
        True,
    ),
    "timm_resnet_d": (
        "resnet50",
        {"variant": "d"},
        lambda n: resnet(
            SHAPE,
            (1, 1, 1, 1),
            True,
            "resnet50",
            n,
            variant="d",
            widths=(8, 8, 16, 16),
            stem_width=8,
            explicit_padding=True,
        ),
        True,
    ),
    "timm_mobilenet_v2": (
        "mobilenet_v2",
        {"depth_multiplier": 0.25},
        lambda n: build_backbone(
            "mobilenet_v2",
            SHAPE,
            n,
            alpha=0.35,
            depth_multiplier=0.25,
            last_channels=64,
            bn_epsilon=1e-5,
            torch_padding=True,
        ),
        True,
    ),
    "timm_ese_vovnet": ("ese_vovnet39", {}, lambda n: vovnet(SHAPE, TINY_VOVNET, "tiny", n, torch_padding=True), True),
    "timm_ese_vovnet_dw": (
        "ese_vovnet19_slim",
        {},
        lambda n: vovnet(SHAPE, TINY_VOVNET_DW, "tiny", n, torch_padding=True),
        True,
    ),
    "detectron2_vovnet": (
        "ese_vovnet39",
        {},
        lambda n: vovnet(SHAPE, TINY_VOVNET, "tiny", n, ese_on_every_block=True, torch_padding=True),
        False,
    ),
    "official_emov2": (
        "emov2_1m",
        {},
        lambda n: emov2(
            SHAPE,
            n,
            variant="tiny",
            window_size=2,
            stages=_stages((1, 2, 2, 2), (8, 16, 16, 24), (2.0, 2.0, 2.0, 2.0), (8, 8, 8, 8)),
        ),
        True,
    ),
    "official_revcol": (
        "revcol_t",
        {},
        lambda n: revcol(SHAPE, RevColConfig((8, 8, 16, 16), (1, 1, 2, 1), 4), "revcol_t", n),
        True,
    ),
}


def checkpoint_file(case: str) -> Path:
    return next(p for p in FIXTURES.glob(f"{case}.*") if p.suffix in (".safetensors", ".pth"))


def load_converted(model, backbone: str, options: dict, path: Path) -> None:
    variables = variables_by_path(model)
    weights = convert(backbone, options, list(variables), read_checkpoint(path), path.name)
    for name, variable in variables.items():
        variable.assign(weights[name])


def our_outputs(build, backbone: str, options: dict, has_head: bool, checkpoint: Path, images) -> dict[str, np.ndarray]:
    """Logits and C2..C5 (NCHW) of our network ``build(classes)`` holding ``checkpoint``: the checkpoint goes into
    the classifier and into the features model of the same network."""
    images = images.transpose(0, 2, 3, 1)
    ours = {}
    if has_head:
        classifier = build(len(read_checkpoint(checkpoint)[HEAD_BIAS[family_of(backbone)]]))
        load_converted(classifier, backbone, options, checkpoint)
        ours["logits"] = np.asarray(classifier(images, training=False))
    features = build(None)
    load_converted(features, backbone, options, checkpoint)
    for name, value in features(images, training=False).items():
        ours[name] = np.asarray(value).transpose(0, 3, 1, 2)
    return ours


def compare(ours: dict[str, np.ndarray], reference: dict[str, np.ndarray], what: str) -> dict[str, float]:
    """Max abs error of each output of ``ours`` against the source's ``reference`` (same names and shapes)."""
    if sorted(ours) != sorted(reference):
        raise AssertionError(f"{what}: outputs {sorted(ours)} vs the source's {sorted(reference)}")
    for name in reference:
        if ours[name].shape != reference[name].shape:
            raise AssertionError(f"{what} {name}: shape {ours[name].shape} vs the source's {reference[name].shape}")
    return {name: float(np.max(np.abs(ours[name] - reference[name]))) for name in sorted(reference)}


def max_abs_errors(case: str) -> dict[str, float]:
    """Max abs error of each output (logits, C2..C5) of the converted tiny checkpoint of ``case`` against the source."""
    backbone, options, build, has_head = CASES[case]
    images = np.load(FIXTURES / "inputs.npz")["images"]
    ours = our_outputs(build, backbone, options, has_head, checkpoint_file(case), images)
    return compare(ours, dict(np.load(FIXTURES / f"{case}_outputs.npz")), case)


# published checkpoint (manifest) -> (our backbone, its build options, the checkpoint has a classifier head)
PUBLISHED = {
    "timm_resnet18": ("resnet18", {}, True),
    "timm_resnet34": ("resnet34", {}, True),
    "timm_resnet50": ("resnet50", {}, True),
    "timm_resnet101": ("resnet101", {}, True),
    "timm_resnet50d": ("resnet50", {"variant": "d"}, True),
    "timm_resnet101d": ("resnet101", {"variant": "d"}, True),
    "timm_mobilenetv2_050": ("mobilenet_v2", {"alpha": 0.5}, True),
    "timm_mobilenetv2_100": ("mobilenet_v2", {"alpha": 1.0}, True),
    "timm_mobilenetv2_140": ("mobilenet_v2", {"alpha": 1.4}, True),
    "timm_ese_vovnet39b": ("ese_vovnet39", {}, True),
    "timm_ese_vovnet57b": ("ese_vovnet57", {}, True),
    "detectron2_V-19-slim-dw-eSE": ("ese_vovnet19_slim", {"ese_on_every_block": True}, False),
    "detectron2_V-19-eSE": ("ese_vovnet19", {"ese_on_every_block": True}, False),
    "detectron2_V-39-eSE": ("ese_vovnet39", {"ese_on_every_block": True}, False),
    "detectron2_V-57-eSE": ("ese_vovnet57", {"ese_on_every_block": True}, False),
    "official_EMO2_1M_k5_hybrid": ("emov2_1m", {}, True),
    "official_EMO2_2M_k5_hybrid": ("emov2_2m", {}, True),
    "official_EMO2_5M_k5_hybrid": ("emov2_5m", {}, True),
    "official_revcol_tiny": ("revcol_t", {}, True),
    "official_revcol_small": ("revcol_s", {}, True),
    "official_revcol_base": ("revcol_b", {}, True),
}


def placeholder(shape) -> np.ndarray:
    """A zero array of ``shape`` that allocates nothing (every stride 0): real checkpoints reach 550 MB."""
    return np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), tuple(shape), (0,) * len(shape))
