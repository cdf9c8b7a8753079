"""PyTorch checkpoints: a reader that runs no code from the file, and converted weights that compute what
the source framework computes.

The fixtures under tests/fixtures/pretrained/ were written by tools/torch_reference.py with torch and the
source code (timm, the official EMOv2, RevCol and vovnet-detectron2): tiny random-weight models of each
family in their published format, their outputs on fixed inputs, and the tensor names and shapes of the
real published checkpoints. Nothing here imports torch or downloads.
"""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from vision_core.app.task import BackboneSpec
from vision_core.app.transfer import backbone_variables, load_backbone_weights
from vision_core.backbones import build_backbone
from vision_core.backbones.emov2 import _stages, emov2
from vision_core.backbones.resnet import resnet
from vision_core.backbones.revcol import RevColConfig, revcol
from vision_core.backbones.torch_layouts import convert
from vision_core.backbones.vovnet import VoVNetSpec, vovnet
from vision_core.errors import AppError
from vision_core.storage.torch_files import read_checkpoint
from vision_core.storage.weights import variables_by_path

FIXTURES = Path(__file__).parent / "fixtures" / "pretrained"
TOLERANCE = 1e-4
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


def converted_outputs(case: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Our outputs (logits and C2..C5 as NCHW) and the source framework's, for the tiny checkpoint of ``case``:
    the checkpoint goes into the classifier and into the features model of the same network."""
    backbone, options, build, has_head = CASES[case]
    images = np.load(FIXTURES / "inputs.npz")["images"].transpose(0, 2, 3, 1)
    ours = {}
    if has_head:
        classifier = build(10)
        load_converted(classifier, backbone, options, checkpoint_file(case))
        ours["logits"] = np.asarray(classifier(images, training=False))
    features = build(None)
    load_converted(features, backbone, options, checkpoint_file(case))
    for name, value in features(images, training=False).items():
        ours[name] = np.asarray(value).transpose(0, 3, 1, 2)
    return ours, dict(np.load(FIXTURES / f"{case}_outputs.npz"))


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_converted_checkpoint_computes_what_the_source_framework_computes(case):
    ours, reference = converted_outputs(case)
    assert sorted(ours) == sorted(reference)
    for name in reference:
        assert ours[name].shape == reference[name].shape, name
        error = float(np.max(np.abs(ours[name] - reference[name])))
        assert error <= TOLERANCE, f"{case} {name}: max abs error {error:.2e}"


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
# One checkpoint per family and naming convention runs by default; the others (more blocks, other widths) are slow.
FAST = {
    "timm_resnet50",
    "timm_resnet50d",
    "timm_mobilenetv2_100",
    "timm_ese_vovnet39b",
    "detectron2_V-19-slim-dw-eSE",
    "detectron2_V-39-eSE",
    "official_EMO2_1M_k5_hybrid",
    "official_revcol_tiny",
}


def placeholder(shape) -> np.ndarray:
    """A zero array of ``shape`` that allocates nothing (every stride 0): real checkpoints reach 550 MB."""
    return np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), tuple(shape), (0,) * len(shape))


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict[str, list[int]]]:
    with gzip.open(FIXTURES / "manifests.json.gz", "rt") as f:
        return json.load(f)


def test_every_published_checkpoint_has_a_manifest(manifests):
    assert sorted(manifests) == sorted(PUBLISHED)


@pytest.mark.parametrize(
    "published", [p if p in FAST else pytest.param(p, marks=pytest.mark.slow) for p in sorted(PUBLISHED)]
)
def test_a_published_checkpoint_maps_onto_every_variable_with_its_shape(published, manifests):
    backbone, options, has_head = PUBLISHED[published]
    model = build_backbone(backbone, SHAPE, 1000 if has_head else None, **options)
    shapes = {path: tuple(v.shape) for path, v in variables_by_path(model).items()}
    tensors = {name: placeholder(shape) for name, shape in manifests[published].items()}
    weights = convert(backbone, options, list(shapes), tensors, published)  # raises on a missing or unused tensor
    assert sorted(weights) == sorted(shapes)
    assert [p for p in shapes if weights[p].shape != shapes[p]] == []


def tiny_mobilenet_spec(**options) -> BackboneSpec:
    """The tiny timm MobileNetV2 of the fixture, as a task names its backbone."""
    base = dict(alpha=0.35, depth_multiplier=0.25, last_channels=64, bn_epsilon=1e-5, torch_padding=True)
    return BackboneSpec("mobilenet_v2", SHAPE, {**base, **options})


def test_backbone_weights_take_a_safetensors_file_and_log_what_loaded(caplog):
    spec = tiny_mobilenet_spec()
    path = FIXTURES / "timm_mobilenet_v2.safetensors"
    variables = backbone_variables(build_backbone(spec.name, SHAPE, **spec.options), spec)
    with caplog.at_level(logging.INFO):
        assert load_backbone_weights(variables, spec, str(path)) == (path, len(variables))
    assert f"loaded {path}: {len(variables)} of {len(variables)} backbone variables (mobilenet_v2)" in caplog.text
    assert "computes slightly otherwise" not in caplog.text
    expected = read_checkpoint(path)
    np.testing.assert_array_equal(variables["Conv1/kernel"].numpy(), expected["conv_stem.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(
        variables["block_1_project_BN/moving_variance"].numpy(), expected["blocks.1.0.bn3.running_var"]
    )


def test_a_checkpoint_of_another_depth_is_an_error_naming_the_variables_and_nothing_loads():
    spec = tiny_mobilenet_spec(depth_multiplier=0.5)  # two blocks in stages 2-5: the file has one
    variables = backbone_variables(build_backbone(spec.name, SHAPE, **spec.options), spec)
    before = {p: v.numpy().copy() for p, v in variables.items()}
    with pytest.raises(AppError) as caught:
        load_backbone_weights(variables, spec, str(FIXTURES / "timm_mobilenet_v2.safetensors"))
    message = str(caught.value)
    assert message.startswith(f"{FIXTURES / 'timm_mobilenet_v2.safetensors'}: does not fit mobilenet_v2 ")
    assert ": 60 of 170 variables missing in the file (block_3_expand/kernel <- blocks.2.1.conv_pw.weight; " in message
    assert "fit no variable" not in message  # every tensor of the file has its variable
    assert all(np.array_equal(before[p], v.numpy()) for p, v in variables.items())


def test_a_checkpoint_of_another_family_names_the_tensors_that_fit_nothing():
    tensors = read_checkpoint(FIXTURES / "timm_resnet_d.safetensors")
    paths = list(variables_by_path(build_backbone("ese_vovnet39", SHAPE)))
    pattern = (
        r"^x: does not fit ese_vovnet39: 203 of 203 variables missing in the file "
        r"\(stem1_conv/kernel <- stem.0.conv.weight; .*; "
        r"97 tensors of the file fit no variable \(bn1.bias, bn1.running_mean, "
    )
    with pytest.raises(AppError, match=pattern):
        convert("ese_vovnet39", {}, paths, tensors, "x")


def test_loading_into_a_tf_padded_backbone_warns_how_to_compute_exactly_what_the_source_does(caplog):
    spec = tiny_mobilenet_spec(torch_padding=False, bn_epsilon=1e-3)
    variables = backbone_variables(build_backbone(spec.name, SHAPE, **spec.options), spec)
    with caplog.at_level(logging.INFO):
        load_backbone_weights(variables, spec, str(FIXTURES / "timm_mobilenet_v2.safetensors"))
    assert (
        "the weights load, but mobilenet_v2 computes slightly otherwise than the source (its strided convs pad as TF "
        "does, PyTorch symmetrically; its batch norms use keras' epsilon 1e-3, PyTorch 1e-5); build it with "
        "torch_padding=True, bn_epsilon=1e-5 to compute exactly what the source computes"
    ) in caplog.text


def test_tf_same_padding_is_what_the_torch_padding_option_fixes():
    """The structural difference the options remove: the same weights, TF "same" padding, another function."""
    backbone, options, build, _ = CASES["timm_resnet_bottleneck"]
    model = resnet(SHAPE, (1, 1, 1, 1), True, "resnet50", None, widths=(8, 8, 16, 16))  # default v1.5 padding
    load_converted(model, backbone, options, checkpoint_file("timm_resnet_bottleneck"))
    images = np.load(FIXTURES / "inputs.npz")["images"].transpose(0, 2, 3, 1)
    reference = np.load(FIXTURES / "timm_resnet_bottleneck_outputs.npz")["C2"]
    ours = np.asarray(model(images, training=False)["C2"]).transpose(0, 3, 1, 2)
    assert float(np.max(np.abs(ours - reference))) > 0.1
