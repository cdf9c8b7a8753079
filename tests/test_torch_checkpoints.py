"""PyTorch checkpoints converted onto our backbones compute what the source framework computes, cover every
published checkpoint's tensors, and load through ``--backbone-weights`` with clear errors.

The fixtures under tests/fixtures/pretrained/ were written by tools/torch_reference.py with torch and the
source code (timm, the official EMOv2, RevCol and vovnet-detectron2): tiny random-weight models of each
family in their published format, their outputs on fixed inputs, and the tensor names and shapes of the
real published checkpoints. Nothing here imports torch or downloads.
"""

from __future__ import annotations

import gzip
import json
import logging

import numpy as np
import pytest
from torch_reference_cases import (
    CASES,
    FIXTURES,
    PUBLISHED,
    SHAPE,
    TOLERANCE,
    checkpoint_file,
    load_converted,
    max_abs_errors,
    placeholder,
)

from vision_core.app.task import BackboneSpec
from vision_core.app.transfer import backbone_variables, load_backbone_weights
from vision_core.backbones import build_backbone
from vision_core.backbones.resnet import resnet
from vision_core.backbones.torch_layouts import convert, exact_source_options, source_options_note
from vision_core.errors import AppError
from vision_core.storage.torch_files import read_checkpoint
from vision_core.storage.weights import variables_by_path


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_converted_checkpoint_computes_what_the_source_framework_computes(case):
    errors = max_abs_errors(case)
    assert sorted(errors) == (
        ["C2", "C3", "C4", "C5"] if case == "detectron2_vovnet" else ["C2", "C3", "C4", "C5", "logits"]
    )
    assert {name: e for name, e in errors.items() if e > TOLERANCE} == {}


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


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict[str, list[int]]]:
    with gzip.open(FIXTURES / "manifests.json.gz", "rt") as f:
        return json.load(f)


def test_every_published_checkpoint_has_a_manifest(manifests):
    assert sorted(manifests) == sorted(PUBLISHED)


# Deeper copies of tested layouts whose Keras models take minutes to build: benchmarks/torch_equivalence.py
# maps them (its JSON records the coverage of every published checkpoint).
HEAVY = {"timm_resnet101", "timm_resnet101d", "official_revcol_small", "official_revcol_base"}


@pytest.mark.parametrize(
    "published",
    [p if p in FAST else pytest.param(p, marks=pytest.mark.slow) for p in sorted(PUBLISHED) if p not in HEAVY],
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
    assert f"{path}: folded the source's input normalisation (RGB [0, 1], ImageNet mean" in caplog.text
    expected = read_checkpoint(path)
    np.testing.assert_array_equal(  # the stem gets timm's input normalisation folded in (tests/test_input_norm.py)
        variables["block_1_project/kernel"].numpy(), expected["blocks.1.0.conv_pwl.weight"].transpose(2, 3, 1, 0)
    )
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
        "does, PyTorch symmetrically; its batch norms use keras' epsilon 1e-3, PyTorch 1e-5); train with "
        "--backbone-layout torch (build options torch_padding=True, bn_epsilon=1e-05) to compute exactly what the "
        "source computes"
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


def test_a_revcol_checkpoint_trained_without_intermediate_supervision_loads_its_single_head():
    """The ImageNet-22k fine-tuned RevCol releases hold one classifier, ``cls``, and no decoders."""
    backbone, options, build, _ = CASES["official_revcol"]
    tensors = read_checkpoint(checkpoint_file("official_revcol"))
    single = {
        name.replace("cls_blocks.3.", "cls."): value
        for name, value in tensors.items()
        if not name.startswith(("cls_blocks.0.", "cls_blocks.1.", "cls_blocks.2.", "decoder_blocks."))
    }
    paths = list(variables_by_path(build(10)))
    released = convert(backbone, options, paths, tensors)
    fine_tuned = convert(backbone, options, paths, single)
    assert all(np.array_equal(released[p], fine_tuned[p]) for p in paths)
    np.testing.assert_array_equal(fine_tuned["predictions/kernel"], single["cls.classifier.1.weight"].T)


def test_the_exact_source_options_are_those_the_equivalence_cases_build_with():
    assert exact_source_options("resnet50") == {"explicit_padding": True}
    assert exact_source_options("mobilenet_v2") == {"torch_padding": True, "bn_epsilon": 1e-5}
    assert exact_source_options("ese_vovnet39") == {"torch_padding": True}
    assert exact_source_options("emov2_1m") == {} and exact_source_options("revcol_t") == {}
    assert source_options_note("mobilenet_v2", tiny_mobilenet_spec().options) is None
    assert source_options_note("resnet50", {"variant": "d", "explicit_padding": True}) is None


def test_the_apps_backbone_layout_torch_builds_the_exact_source_options():
    import dataclasses

    from apps.classify.task import ClassifyTask
    from apps.detect.models import backbone_spec
    from vision_core.backbones import backbone_options

    exact = {"alpha": 0.5, "torch_padding": True, "bn_epsilon": 1e-5}
    assert backbone_options("mobilenet_v2", 0.5, None, "torch") == exact
    assert backbone_options("mobilenet_v2", 0.5) == {"alpha": 0.5}
    assert backbone_options("revcol_t", layout="torch") == {}
    with pytest.raises(ValueError, match="backbone_layout='caffe': expected one of tf, torch"):
        backbone_options("resnet18", layout="caffe")
    task = ClassifyTask()
    preset = task.presets["shapes_resnet18"]
    config = dataclasses.replace(preset, model=dataclasses.replace(preset.model, backbone_layout="torch"))
    assert task.backbone(config).options == {"explicit_padding": True}
    assert backbone_spec({"backbone": "ese_vovnet39", "backbone_layout": "torch"})[2] == {"torch_padding": True}
