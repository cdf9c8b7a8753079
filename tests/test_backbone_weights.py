"""Transfer learning in the framework: pretrained backbone weights, a frozen backbone, the backbone's learning rate.

Nothing here touches the network: ImageNet files are written into a temporary keras cache, and
keras' downloader is replaced by one that fails.
"""

from __future__ import annotations

import copy
import logging

import h5py
import numpy as np
import pytest

from apps.classify.config import ClassifyConfig, DatasetConfig
from apps.classify.config import ModelConfig as ClassifierConfig
from apps.classify.task import ClassifyTask
from apps.detect.config import PRESETS as DETECT_PRESETS
from apps.detect.config import DetectConfig
from apps.detect.config import ModelConfig as DetectorConfig
from apps.detect.models import build_detector, describe
from apps.detect.task import DetectTask
from vision_core.app import runs
from vision_core.app.cli import build_parser, main, resolve_config
from vision_core.app.config import IMAGENET_IF_AVAILABLE, TrainConfig
from vision_core.app.schedules import WarmupDecay, build_optimizer
from vision_core.app.task import BackboneSpec
from vision_core.app.trainer import train
from vision_core.app.transfer import backbone_variables, check_transfer, load_backbone_weights
from vision_core.backbones import build_backbone
from vision_core.backbones.pretrained import imagenet_file_name
from vision_core.backend import keras
from vision_core.errors import AppError
from vision_core.logs import get_logger
from vision_core.storage.weights import load_npz, save_npz, weights_by_path

RESNET18_VARIABLES = 100  # conv kernels, batch-norm gamma/beta/moving mean/variance of build_backbone("resnet18")
MOBILENET_V2_VARIABLES = 260


def randomise(model, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for v in model.weights:
        values = rng.uniform(0.5, 1.5, v.shape) if "variance" in v.path else rng.normal(0, 0.05, v.shape)
        v.assign(values.astype("float32"))


def tiny_detector(backbone: str, size: int = 64, **fields) -> tuple[keras.Model, BackboneSpec]:
    """A small RetinaNet on ``backbone`` and the detect app's description of its backbone."""
    config = DetectorConfig(
        architecture="retinanet",
        backbone=backbone,
        input_size=size,
        levels=(3, 4, 5),
        neck_channels=16,
        head_depth=1,
        head_channels=16,
        **fields,
    )
    task_config = DetectConfig(model=config)
    return build_detector(3, **describe(config)), DetectTask().backbone(task_config)


def classify_config(root, backbone: str = "resnet18", epochs: int = 2, **train) -> ClassifyConfig:
    """Shapes at 32 px: 32 training and 16 validation images, batches of 16 (2 steps an epoch)."""
    return ClassifyConfig(
        model=ClassifierConfig(backbone=backbone, input_size=32, backbone_alpha=0.35),
        dataset=DatasetConfig(demo_dir=str(root / "shapes"), demo_train=32, demo_val=16, augment=False),
        train=TrainConfig(
            epochs=epochs, batch_size=16, optimizer="adam", learning_rate=1e-2, warmup_epochs=0.0, seed=3, **train
        ),
    )


class EpochWeights(keras.callbacks.Callback):
    """Every variable's value at the start of training and at the end of each epoch."""

    def __init__(self):
        super().__init__()
        self.snapshots: list[dict[str, np.ndarray]] = []

    def on_train_begin(self, logs=None):
        self.snapshots.append(weights_by_path(self.model))

    def on_epoch_end(self, epoch, logs=None):
        self.snapshots.append(weights_by_path(self.model))


class RecordingClassifyTask(ClassifyTask):
    def __init__(self):
        super().__init__()
        self.recorder = EpochWeights()

    def callbacks(self, config, run_dir):
        return [self.recorder]


def changed(before: dict, after: dict, paths) -> list[str]:
    return [p for p in paths if not np.array_equal(before[p], after[p])]


@pytest.fixture(scope="module")
def frozen_run(tmp_path_factory):
    """A 2-epoch resnet18 classifier run whose backbone is frozen during the first epoch, with the detect
    presets' ``imagenet_if_available`` (resnet18 has no ImageNet weights); its log lines."""
    root = tmp_path_factory.mktemp("frozen")
    task = RecordingClassifyTask()
    config = classify_config(root, freeze_backbone=1, backbone_weights=IMAGENET_IF_AVAILABLE)
    log, lines = get_logger(), []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    log.addHandler(handler)
    try:
        result = train(task, config, root / "run")
    finally:
        log.removeHandler(handler)
    backbone = {v.path for v in build_backbone("resnet18", (32, 32, 3)).weights}
    return {
        "run": root / "run",
        "epochs": result["epochs"],
        "snapshots": task.recorder.snapshots,
        "backbone": backbone,
        "log": "\n".join(lines),
    }


def test_a_frozen_backbone_keeps_its_weights_and_batch_norm_statistics_then_trains(frozen_run):
    start, first, second = frozen_run["snapshots"]
    backbone = frozen_run["backbone"]
    head = [p for p in start if p not in backbone]
    assert sorted(head) == ["predictions/bias", "predictions/kernel"]
    assert changed(start, first, backbone) == []  # moving means and variances included
    assert changed(start, first, head) == head
    moved = changed(first, second, backbone)
    assert "conv1_conv/kernel" in moved and "conv1_bn/moving_mean" in moved


def test_a_classifier_run_loads_into_a_detectors_backbone_and_its_head_is_ignored(frozen_run, caplog):
    weights_file = runs.weights_path(frozen_run["run"], "best")
    detector, spec = tiny_detector("resnet18")
    variables = backbone_variables(detector, spec)
    with caplog.at_level(logging.INFO):
        assert load_backbone_weights(variables, spec, str(weights_file)) == (weights_file, RESNET18_VARIABLES)
    assert f"loaded {weights_file}: {RESNET18_VARIABLES} of {RESNET18_VARIABLES} backbone variables" in caplog.text
    saved = load_npz(weights_file)
    loaded = weights_by_path(detector)
    assert all(np.array_equal(loaded[p], saved[p]) for p in variables)


def test_weights_of_another_backbone_are_an_error_naming_the_variables_and_nothing_is_loaded(tmp_path):
    classifier = build_backbone("mobilenet_v2", (32, 32, 3), num_classes=4, alpha=0.35)
    save_npz(weights_by_path(classifier), tmp_path / "mobilenet.weights.npz")
    detector, spec = tiny_detector("mobilenet_v2", backbone_alpha=1.0)
    before = weights_by_path(detector)
    with pytest.raises(AppError) as error:
        load_backbone_weights(backbone_variables(detector, spec), spec, str(tmp_path / "mobilenet.weights.npz"))
    assert "does not fit backbone mobilenet_v2" in str(error.value)
    assert "Conv1/kernel (3, 3, 3, 32) vs (3, 3, 3, 16)" in str(error.value)
    assert changed(before, weights_by_path(detector), before) == []

    save_npz(weights_by_path(build_backbone("resnet18", (32, 32, 3))), tmp_path / "resnet18.weights.npz")
    resnet34, spec = tiny_detector("resnet34")
    with pytest.raises(
        AppError, match=r"80 of 180 backbone variables missing in the file \(conv2_block3_1_conv/kernel"
    ):
        load_backbone_weights(backbone_variables(resnet34, spec), spec, str(tmp_path / "resnet18.weights.npz"))


def write_legacy_h5(model, path) -> None:
    """``model``'s weights in keras.applications' file format (the legacy HDF5 layout of its cache files)."""
    from keras.src.legacy.saving.legacy_h5_format import save_weights_to_hdf5_group

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        save_weights_to_hdf5_group(f, model)


@pytest.fixture
def offline(monkeypatch):
    """keras' downloader fails, as on a machine without network; returns the list of attempted downloads."""
    from keras.src.utils import file_utils

    attempts = []

    def no_network(fname, origin=None, *args, **kwargs):
        attempts.append(fname)
        raise Exception(f"URL fetch failure on {origin}: no network")

    monkeypatch.setattr(file_utils, "get_file", no_network)
    return attempts


def test_imagenet_is_read_from_the_keras_cache_without_network(tmp_path, monkeypatch, offline, caplog):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    reference = keras.applications.MobileNetV2(weights=None, alpha=0.35, include_top=False, input_shape=(96, 96, 3))
    randomise(reference)
    cached = tmp_path / "models" / imagenet_file_name("mobilenet_v2", include_top=False, alpha=0.35, rows=96)
    assert cached.name == "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top.h5"  # keras' own name
    write_legacy_h5(reference, cached)
    detector, spec = tiny_detector("mobilenet_v2", size=96, backbone_alpha=0.35)
    with caplog.at_level(logging.INFO):
        result = load_backbone_weights(backbone_variables(detector, spec), spec, "imagenet")
    assert result == (cached, MOBILENET_V2_VARIABLES) and offline == []
    assert f"loaded {cached}: {MOBILENET_V2_VARIABLES} of {MOBILENET_V2_VARIABLES} backbone variables" in caplog.text
    expected, loaded = weights_by_path(reference), weights_by_path(detector)
    assert all(np.array_equal(loaded[p], expected[p]) for p in expected)


def test_mobilenet_v2_of_another_input_size_reads_keras_224_file():
    assert imagenet_file_name("mobilenet_v2", False, 1.0, 320) == (
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
    )
    assert imagenet_file_name("resnet50", False) == "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"


def test_the_papers_detection_presets_default_to_imagenet_when_available_and_demo_starts_from_scratch():
    weights = {name: preset.train.backbone_weights for name, preset in DETECT_PRESETS.items()}
    assert weights == {
        "demo": None,
        "ssdlite_mobilenet_v2": IMAGENET_IF_AVAILABLE,
        "ssd_resnet50": None,
        "retinanet_resnet50_fpn": IMAGENET_IF_AVAILABLE,
        "retinanet_resnet50_rcnet": IMAGENET_IF_AVAILABLE,
    }
    assert DETECT_PRESETS["retinanet_resnet50_fpn"].model.backbone_variant == "keras"


def test_the_preset_default_is_from_scratch_with_a_warning_when_imagenet_cannot_be_downloaded(
    tmp_path, monkeypatch, offline, caplog
):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    detector, spec = tiny_detector("mobilenet_v2", size=96, backbone_alpha=0.35)
    before = weights_by_path(detector)
    with caplog.at_level(logging.WARNING):
        assert load_backbone_weights(backbone_variables(detector, spec), spec, IMAGENET_IF_AVAILABLE) is None
    assert offline == ["mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top.h5"]
    assert "are not in the keras cache and keras could not download them (URL fetch failure" in caplog.text
    assert "Training the backbone from scratch (backbone_weights: imagenet_if_available)" in caplog.text
    assert changed(before, weights_by_path(detector), before) == []


def test_a_run_with_the_preset_default_on_a_backbone_without_imagenet_weights_trains_from_scratch(frozen_run):
    assert frozen_run["epochs"] == 2
    assert "no ImageNet weights: backbone 'resnet18' has no keras.applications weights" in frozen_run["log"]


def test_imagenet_asked_for_explicitly_is_an_error_when_it_cannot_be_had(tmp_path, monkeypatch, offline):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    config = classify_config(tmp_path, "mobilenet_v2", epochs=1, backbone_weights="imagenet")
    with pytest.raises(AppError, match="--backbone-weights imagenet: .*0.35_224_no_top.h5: ImageNet weights for"):
        train(ClassifyTask(), config, tmp_path / "run")


def test_imagenet_for_a_backbone_without_it_names_the_ones_that_have_it(tmp_path):
    config = classify_config(tmp_path, "resnet18", backbone_weights="imagenet")
    with pytest.raises(AppError, match=r"'resnet18' has no keras.applications weights; ImageNet weights exist for "):
        check_transfer(ClassifyTask(), config)


def test_a_task_without_a_backbone_rejects_the_options():
    from toy_task import ToyTask

    config = copy.deepcopy(ToyTask.presets["small"])
    config.train.backbone_lr_ratio = 0.5
    with pytest.raises(AppError, match="task 'toy' has no backbone"):
        check_transfer(ToyTask(), config)


def test_freeze_backbone_alone_freezes_the_whole_training(capsys):
    parser = build_parser(ClassifyTask())
    alone = resolve_config(ClassifyTask(), parser.parse_args(["train", "--freeze-backbone"]))
    given = resolve_config(ClassifyTask(), parser.parse_args(["train", "--freeze-backbone", "2"]))
    assert (alone.train.freeze_backbone, given.train.freeze_backbone) == (-1, 2)
    with pytest.raises(SystemExit) as exit_status:
        main(ClassifyTask(), ["train", "--freeze-backbone", "-2"])
    assert exit_status.value.code == 2
    assert "train.freeze_backbone=-2: must be -1 (the whole training), 0 (never) or a number" in capsys.readouterr().err


def one_step(optimizer_name: str, ratio: float, weight_decay: float) -> tuple[dict, dict, dict]:
    """One optimizer step on a 2-layer model (backbone ``body``, head ``head``) with known gradients:
    ``(weights before, gradients, weights after)`` by path."""
    inputs = keras.Input((3,))
    outputs = keras.layers.Dense(1, name="head")(keras.layers.Dense(2, name="body")(inputs))
    model = keras.Model(inputs, outputs)
    randomise(model, seed=1)
    settings = TrainConfig(
        optimizer=optimizer_name, learning_rate=0.1, weight_decay=weight_decay, backbone_lr_ratio=ratio
    )
    body = [v for v in model.trainable_variables if v.path.startswith("body/")]
    optimizer = build_optimizer(settings, WarmupDecay(peak=0.1, total_steps=10, decay="constant"), body)
    rng = np.random.default_rng(2)
    grads = {v.path: rng.normal(0, 1, v.shape).astype("float32") for v in model.trainable_variables}
    before = weights_by_path(model)
    optimizer.build(model.trainable_variables)
    optimizer.apply([grads[v.path] for v in model.trainable_variables], model.trainable_variables)
    return before, grads, weights_by_path(model)


@pytest.mark.parametrize("optimizer_name", ["sgd", "adam", "adamw"])
def test_the_backbone_steps_at_its_fraction_of_the_learning_rate(optimizer_name):
    ratio, wd = 0.1, 0.01
    before, grads, after = one_step(optimizer_name, ratio, wd)
    for path, w in before.items():
        lr = 0.1 * (ratio if path.startswith("body/") else 1.0)
        g = grads[path].astype(np.float64)
        decayed = w - w * wd * lr if optimizer_name in ("sgd", "adamw") else w
        if optimizer_name == "sgd":  # first step: the velocity is -lr * g
            expected = decayed - lr * g
        else:  # Adam's first step: m = 0.1 g, v = 0.001 g^2, bias corrections 1 - 0.9 and 1 - 0.999
            m, v = 0.1 * g, 0.001 * g**2
            expected = decayed - lr * np.sqrt(1 - 0.999) / (1 - 0.9) * m / (np.sqrt(v) + 1e-7)
        np.testing.assert_allclose(after[path], expected, rtol=1e-5, atol=1e-7, err_msg=path)
