"""The detectors: head layouts line up with the anchors, SSDLite matches its paper's size, and
every architecture survives QAT to an all-int8 TFLite ending in the post-process op.
"""

import dataclasses

import numpy as np
import pytest

from apps.detect.config import PRESETS, ModelConfig
from apps.detect.models import (
    anchor_generator,
    build_detector,
    detector_anchors,
    uses_softmax,
)
from apps.detect.models.heads import PRIOR_PROBABILITY
from tflite.audit import require_int8
from vision_core.detection.export_tail import postprocess_options
from vision_core.quant import qat_job
from vision_core.storage.weights import load_npz, weights_by_path

TINY = {
    "ssd": ModelConfig(architecture="ssd", backbone="mobilenet_v2", backbone_alpha=0.35, input_size=96),
    "ssdlite": ModelConfig(architecture="ssdlite", backbone="mobilenet_v2", backbone_alpha=0.35, input_size=96),
    "retinanet_fpn": ModelConfig(
        architecture="retinanet",
        backbone="resnet18",
        input_size=96,
        neck_channels=32,
        head_depth=1,
        head_channels=32,
        head_norm=True,
        bn_momentum=0.9,
    ),
    "retinanet_rcnet": ModelConfig(
        architecture="retinanet",
        backbone="resnet18",
        input_size=96,
        neck="rcnet",
        neck_channels=32,
        head_depth=1,
        head_channels=32,
        head_norm=True,
    ),
}
# RetinaNet-FPN with the demo preset's heads (ResNet-18, head norm) runs the same QAT chain in
# the detect app's test (tests/test_detect_app.py); the RCNet one here has those heads too.
QAT_CHAIN = ["retinanet_rcnet", "ssd", "ssdlite"]


def _build(config: ModelConfig, num_classes: int = 3):
    return build_detector(num_classes, **dataclasses.asdict(config))


@pytest.mark.parametrize("size", [96, 100, 300])
@pytest.mark.parametrize("kind", sorted(TINY))
def test_heads_emit_one_prediction_per_anchor(kind, size):
    config = dataclasses.replace(TINY[kind], input_size=size)
    model = _build(config, num_classes=3)
    anchors = detector_anchors(config)
    columns = 4 if uses_softmax(config) else 3
    assert anchors.shape == (sum(fh * fw * n for fh, fw, n in _grid(config)), 4)
    assert {k: tuple(v.shape) for k, v in model.output.items()} == {
        "box_encodings": (None, len(anchors), 4),
        "class_logits": (None, len(anchors), columns),
        "class_scores": (None, len(anchors), columns),
    }


def _grid(config):
    generator = anchor_generator(config)
    return [
        (-(-config.input_size // s), -(-config.input_size // s), n)
        for s, n in zip(generator.strides, generator.boxes_per_location)
    ]


@pytest.mark.parametrize("kind", ["retinanet_fpn", "ssd"])
def test_class_columns_follow_the_anchor_order_within_a_location(kind):
    """Predictor channel ``slot * C + c`` is class column c of the slot-th anchor of every cell."""
    config = TINY[kind]
    model = _build(config, num_classes=3)
    columns = model.output["class_logits"].shape[-1]
    for layer in model.layers:
        if layer.name.endswith("_predict") and "class" in layer.name:
            kernel, bias = layer.get_weights()
            layer.set_weights([np.zeros_like(kernel), np.arange(bias.size, dtype=np.float32)])
    logits = model.predict(np.zeros((1, 96, 96, 3), np.float32), verbose=0)["class_logits"][0]
    slots = np.concatenate([np.tile(np.arange(n), fh * fw) for fh, fw, n in _grid(config)])
    np.testing.assert_array_equal(logits, slots[:, None] * columns + np.arange(columns))


def test_retinanet_class_bias_starts_at_the_prior():
    model = _build(TINY["retinanet_fpn"], num_classes=3)
    bias = model.get_layer("head_class_predict").get_weights()[1]
    np.testing.assert_allclose(1 / (1 + np.exp(-bias)), PRIOR_PROBABILITY, rtol=1e-6)
    scores = model.predict(np.random.default_rng(0).uniform(-1, 1, (1, 96, 96, 3)).astype(np.float32), verbose=0)[
        "class_scores"
    ]
    assert abs(float(scores.mean()) - PRIOR_PROBABILITY) < 0.005


def test_ssd_scores_are_a_softmax_with_background_first():
    model = _build(TINY["ssdlite"], num_classes=3)
    outputs = model.predict(np.random.default_rng(0).uniform(-1, 1, (2, 96, 96, 3)).astype(np.float32), verbose=0)
    np.testing.assert_allclose(outputs["class_scores"].sum(-1), 1.0, atol=1e-5)
    exp = np.exp(outputs["class_logits"] - outputs["class_logits"].max(-1, keepdims=True))
    np.testing.assert_allclose(outputs["class_scores"], exp / exp.sum(-1, keepdims=True), atol=1e-6)


def test_ssdlite_mobilenet_v2_has_the_papers_size():
    """MobileNetV2 paper, Table 6: SSDLite on MobileNetV2 at 320, COCO (90 classes + background): 4.3M params."""
    model = _build(PRESETS["ssdlite_mobilenet_v2"].model, num_classes=90)
    assert model.count_params() == pytest.approx(4.3e6, rel=0.03)
    assert (
        len(detector_anchors(PRESETS["ssdlite_mobilenet_v2"].model)) == 20**2 * 3 + (10**2 + 5**2 + 3**2 + 2**2 + 1) * 6
    )


def test_bn_momentum_reaches_every_batch_norm_of_backbone_neck_and_heads():
    model = _build(dataclasses.replace(TINY["retinanet_fpn"], bn_momentum=0.5))
    norms = [layer for layer in model.layers if type(layer).__name__ == "BatchNormalization"]
    assert any(n.name.startswith("conv1") for n in norms) and any("head" in n.name for n in norms)
    assert {n.momentum for n in norms} == {0.5}


def test_unknown_architecture_is_named():
    with pytest.raises(ValueError, match="unknown architecture 'yolo'"):
        build_detector(3, **{**dataclasses.asdict(TINY["ssd"]), "architecture": "yolo"})


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind", [pytest.param(k, marks=pytest.mark.xdist_group(f"detector_qat_{k}")) for k in QAT_CHAIN]
)
def test_every_detector_survives_qat_to_an_all_int8_tflite(kind, tmp_path):
    """The tf_keras twin rebuilt from JSON equals the Keras 3 model; a QAT fine-tune on the detection
    loss runs; the QAT model converts to int8 with the post-process op, and only that op is float."""
    config = TINY[kind]
    model = _build(config, num_classes=3)
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (8, 96, 96, 3)).astype(np.float32)
    anchors = len(detector_anchors(config))
    class_targets = rng.choice([0, 1, 2, 3, -1], size=(8, anchors), p=[0.02, 0.02, 0.02, 0.9, 0.04])
    box_targets = np.concatenate([rng.normal(0, 1, (8, anchors, 4)), class_targets[..., None]], -1)
    fields = dataclasses.asdict(config)
    spec = qat_job.QATJobSpec(
        "apps.detect.models:build_detector",
        {"num_classes": 3, **fields},
        steps=2,
        batch_size=4,
        loss="apps.detect.losses:detection_loss",
        loss_options={"softmax": uses_softmax(config), "num_classes": 3},
        inference="apps.detect.task:with_postprocess_op",
        inference_options={
            "model_config": fields,
            "postprocess": {"num_classes": 3, "box_scales": [10.0, 10.0, 5.0, 5.0]},
        },
        tflite_options={"output_dtype": "float32", "allow_custom_ops": True},
        metadata={"task": "detection", "name": kind, "labels": ["a", "b", "c"]},
    )
    spec.write(
        tmp_path,
        weights_by_path(model),
        {
            "calibration": images,
            "train_x": images,
            "probe_x": images[:2],
            "target.box_encodings": box_targets.astype(np.float32),
            "target.class_logits": class_targets.astype(np.float32),
        },
    )
    result = qat_job.launch(tmp_path / "spec.json", timeout=900)

    twin = load_npz(tmp_path / "qat" / "probe.npz")
    ours = model.predict(images[:2], verbose=0)
    for name in ("box_encodings", "class_scores"):
        np.testing.assert_allclose(twin[name], ours[name], atol=1e-4)
    assert len(result["losses"]) == 2 and np.isfinite(result["losses"]).all()
    # RCNet's max pools get their input's range back after the fine-tune (else the converter rejects them)
    pools = [layer for layer in model.layers if type(layer).__name__ == "QuantizedMaxPooling2D"]
    assert result["tied_ranges"] == len(pools) == (10 if kind == "retinanet_rcnet" else 0)
    flatbuffer = (tmp_path / "qat" / "qat_int8.tflite").read_bytes()
    records = require_int8(flatbuffer, source=kind)
    assert [r.op for r in records if r.op == "TFLite_Detection_PostProcess"] == ["TFLite_Detection_PostProcess"]
    assert postprocess_options(flatbuffer)["num_classes"] == 3
