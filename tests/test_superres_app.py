"""The superres app: ESPCN as the paper defines it, fully convolutional, and train -> qat -> export int8
(audited all-int8, uint8 in and out) -> eval on the .tflite with the same evaluator."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from apps.superres.config import PRESETS
from apps.superres.models import build_espcn, shipped_model
from apps.superres.task import SuperResTask
from tflite.audit import require_int8
from tflite.metadata import read_metadata
from tflite.runtime import TFLiteModel
from vision_core.app.cli import main
from vision_core.backend import tf
from vision_core.superres.runners import tiled


def run_cli(*argv) -> int:
    """``python -m apps.superres argv`` in this process; its exit status."""
    return main(SuperResTask(), [str(a) for a in argv])


def test_the_default_preset_is_the_papers_x3_y_model_with_relu_and_tanh_is_one_preset_away():
    assert next(iter(PRESETS)) == "espcn_x3_y"
    layout = {
        name: (p.model.scale, p.model.colour, p.model.features, p.model.kernels, p.model.activation)
        for name, p in PRESETS.items()
    }
    assert layout["espcn_x3_y"] == (3, "y", (64, 32), (5, 3, 3), "relu")
    assert layout["espcn_x3_y_tanh"] == (3, "y", (64, 32), (5, 3, 3), "tanh")
    assert (PRESETS["espcn_x3_y"].train.epochs, PRESETS["espcn_x3_y"].dataset.patch_candidates) == (60, 4)
    assert {p.model.scale for p in PRESETS.values()} == {2, 3, 4}


def test_espcn_has_the_papers_layers_and_parameters():
    model = build_espcn(3, 1)
    kernels = [tuple(layer.kernel.shape) for layer in model.layers if hasattr(layer, "kernel")]
    assert kernels == [(5, 5, 1, 64), (3, 3, 64, 32), (3, 3, 32, 9)]
    assert model.count_params() == (25 * 64 + 64) + (9 * 64 * 32 + 32) + (9 * 32 * 9 + 9)


@pytest.mark.parametrize("scale, channels", [(2, 1), (3, 1), (4, 3)])
def test_the_same_weights_run_at_any_input_size(scale, channels):
    model = build_espcn(scale, channels, features=(8, 4))
    rng = np.random.default_rng(scale)
    big = rng.uniform(0, 1, (1, 20, 27, channels)).astype(np.float32)
    for height, width in ((7, 9), (16, 16), (20, 27)):
        output = np.asarray(model(big[:, :height, :width]))
        assert output.shape == (1, height * scale, width * scale, channels)
    # away from the zero-padded border, a crop's output is the big image's output cropped
    whole = np.asarray(model(big))
    crop = np.asarray(model(big[:, :16, :16]))
    margin = 4  # receptive radius of 5-3-3 kernels: 2 + 1 + 1
    inner = (16 - margin) * scale
    assert np.allclose(crop[0, :inner, :inner], whole[0, :inner, :inner], atol=1e-5)


def test_depth_to_space_orders_blocks_as_tensorflow():
    x = np.arange(2 * 3 * 4, dtype=np.float32).reshape(1, 2, 3, 4)
    model = build_espcn(2, 1, features=(4,), kernels=(1, 1))
    assert np.array_equal(model.get_layer("sr_image")(x), tf.nn.depth_to_space(x, 2))


def test_the_shipped_model_is_fixed_size_and_clipped():
    model = build_espcn(2, 1, features=(4,), kernels=(3, 3))
    shipped = shipped_model(model, 6, 8)
    assert tuple(shipped.inputs[0].shape) == (1, 6, 8, 1)
    x = np.random.default_rng(0).uniform(-50, 50, (1, 6, 8, 1)).astype(np.float32)
    out = np.asarray(shipped(x))
    assert out.min() >= 0 and out.max() <= 1
    assert np.allclose(out, np.clip(np.asarray(model(x)), 0, 1), atol=1e-6)


def test_tiles_of_a_fixed_size_model_give_the_whole_image_output():
    model = build_espcn(2, 1, features=(4, 4))
    image = np.random.default_rng(5).uniform(0, 1, (20, 27, 1)).astype(np.float32)
    whole = np.asarray(model(image[None]))[0]
    margin = 4  # the receptive radius of 5-3-3 kernels: tiles overlapping by it see what the whole image sees
    stitched = tiled(lambda tile: np.asarray(model(tile[None]))[0], image, (12, 12), margin)
    assert stitched.shape == (40, 54, 1)
    assert np.allclose(stitched, whole, atol=1e-5)


def test_data_check_exits_non_zero_naming_the_bad_files(tmp_path, capsys):
    for split, count in (("train", 2), ("val", 1)):
        (tmp_path / split).mkdir()
        for index in range(count):
            image = np.random.default_rng(index).integers(0, 256, (30, 30, 3)).astype(np.uint8)
            assert cv2.imwrite(str(tmp_path / split / f"{index}.png"), image)
    (tmp_path / "train" / "broken.png").write_bytes(b"\x89PNG truncated")
    assert run_cli("data", "--data", tmp_path, "--patch-size", 12) == 1  # 30 / 3 = 10 < 12
    report = json.loads(capsys.readouterr().out)
    found = sorted((issue["kind"], issue["path"]) for issue in report["train"]["issues"])
    assert found == [
        ("smaller_than_patch", str(tmp_path / "train" / "0.png")),
        ("smaller_than_patch", str(tmp_path / "train" / "1.png")),
        ("unreadable_image", str(tmp_path / "train" / "broken.png")),
    ]
    assert report["val"]["ok"] and report["problems"] == 3


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("superres")
    common = [
        "--demo-dir", root / "demo", "--demo-train", 8, "--demo-val", 3, "--demo-size", 48,
        "--features", "[8, 8]", "--patch-size", 8, "--patches-per-image", 8, "--batch-size", 8,
        "--export-size", "[16, 16]", "--steps", 4, "--fine-tune-batch", 4, "--calibration-images", 8,
    ]  # fmt: skip
    assert run_cli("train", "--project", root / "runs", "--name", "tiny", "--epochs", 2, *common) == 0
    run = root / "runs" / "tiny"
    assert run_cli("qat", "--run", run) == 0
    assert run_cli("export", "--run", run, "--format", "int8", "--saved-models", root / "saved_models") == 0
    return run


@pytest.mark.slow
@pytest.mark.xdist_group("superres_app")
def test_a_tiny_run_ships_uint8_int8_and_is_scored_on_its_tflite(tiny_run):
    metrics = json.loads((tiny_run / "metrics.json").read_text())["metrics"]
    assert metrics["images"] == 3 and metrics["scale"] == 3 and len(metrics["per_image_psnr"]) == 3
    assert metrics["psnr_gain"] == pytest.approx(metrics["psnr"] - metrics["bicubic_psnr"])
    assert (tiny_run / "gallery.png").is_file()
    for name in ("superres_int8.tflite", "superres_int8_qat.tflite"):
        path = tiny_run / "exports" / name
        records = require_int8(path.read_bytes(), source=name)  # raises on any float op
        # the one-channel first conv runs on 2x2 blocks; the [0, 1] clip is the uint8 output's saturation
        first_conv = ["SPACE_TO_DEPTH", "CONV_2D", "DEPTH_TO_SPACE"]
        assert [r.op for r in records] == ["QUANTIZE", *first_conv, "CONV_2D", "CONV_2D", "DEPTH_TO_SPACE", "QUANTIZE"]
        assert {r.input_dtypes[0] for r in records if r.op in ("SPACE_TO_DEPTH", "DEPTH_TO_SPACE")} == {"int8"}
        model = TFLiteModel(path)
        assert model.input_dtype == np.uint8 and model.input_shape == (1, 16, 16, 1)
        assert model.inputs["image"]["quantization"] == pytest.approx((1 / 255, 0), abs=1e-5)
        assert np.dtype(model.outputs["sr_image"]["dtype"]) == np.uint8
        assert read_metadata(path).task == "super_resolution"
    assert run_cli("eval", "--run", tiny_run, "--model", tiny_run / "exports" / "superres_int8_qat.tflite") == 0
    scored = json.loads((tiny_run / "eval_superres_int8_qat.tflite.json").read_text())["metrics"]
    rows = {row["form"]: row for row in json.loads((tiny_run / "exports" / "forms.json").read_text())}
    assert scored["psnr"] == pytest.approx(rows["superres_int8_qat.tflite"]["psnr"])
    assert scored["bicubic_psnr"] == pytest.approx(metrics["bicubic_psnr"])
    assert (tiny_run / "gallery_superres_int8_qat.tflite.png").is_file()


@pytest.mark.slow
@pytest.mark.xdist_group("superres_app")
def test_serving_bytes_feeds_a_y_model_the_8_bit_y_of_the_decoded_image(tiny_run, tmp_path):
    from vision_core.data.superres.pipeline import to_model_pixels

    assert run_cli("export", "--run", tiny_run, "--format", "saved_model", "--saved-models", tmp_path) == 0
    (version,) = (tmp_path / "superres_tiny").iterdir()
    served = tf.saved_model.load(str(version))
    rgb = np.random.default_rng(4).integers(0, 256, (16, 16, 3), np.uint8)
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    from_bytes = served.signatures["serving_bytes"](image_bytes=tf.constant([png.tobytes()]))
    from_tensor = served.signatures["serving_default"](tf.constant(to_model_pixels(rgb, "y")[None]))
    (name,) = from_bytes
    assert from_bytes[name].shape == (1, 48, 48, 1)
    np.testing.assert_allclose(from_bytes[name].numpy(), from_tensor[name].numpy(), atol=1e-6)


@pytest.mark.slow
@pytest.mark.xdist_group("superres_app")
def test_serving_any_size_exports_an_onnx_and_savedmodel_that_take_every_size(tiny_run, tmp_path):
    from vision_core.app.runs import load_model, run_config, weights_path
    from vision_core.superres.runners import ONNXSRRunner

    argv = ["export", "--run", tiny_run, "--format", "onnx", "--saved-models", tmp_path, "--serving-any-size"]
    assert run_cli(*argv) == 0
    runner = ONNXSRRunner(tiny_run / "exports" / "superres.onnx")
    assert runner.size == (None, None)
    (version,) = (tmp_path / "superres_tiny").iterdir()
    served = tf.saved_model.load(str(version)).signatures["serving_default"]
    task = SuperResTask()
    trained = load_model(task, run_config(task, tiny_run), weights_path(tiny_run))
    model = shipped_model(trained, None, None)
    rng = np.random.default_rng(5)
    for height, width in ((16, 16), (20, 12), (9, 31)):
        image = rng.uniform(0.1, 0.9, (height, width, 1)).astype(np.float32)
        expected = np.asarray(model(image[None]))[0]
        assert expected.shape == (3 * height, 3 * width, 1)
        np.testing.assert_allclose(runner(image), expected, atol=1e-5)
        (output,) = served(tf.constant(image[None])).values()
        np.testing.assert_allclose(output.numpy()[0], expected, atol=1e-5)


@pytest.mark.slow
def test_train_and_eval_on_a_folder_of_the_users_high_resolution_images(tmp_path):
    from vision_core.data.superres.demo import demo_image

    for split, seeds in (("train", range(6)), ("val", range(6, 8))):
        (tmp_path / split).mkdir()
        for seed in seeds:
            image = demo_image(60, (seed, 1))
            cv2.imwrite(str(tmp_path / split / f"photo{seed}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    tiny = ["--data", tmp_path / "train", "--val", tmp_path / "val", "--features", "[8, 8]", "--patch-size", 8]
    tiny += ["--patches-per-image", 4, "--batch-size", 4, "--epochs", 1]
    assert run_cli("train", "--project", tmp_path / "runs", "--name", "mine", *tiny) == 0
    metrics = json.loads((tmp_path / "runs" / "mine" / "metrics.json").read_text())["metrics"]
    assert (metrics["images"], metrics["scale"]) == (2, 3)
    assert run_cli("eval", "--run", tmp_path / "runs" / "mine") == 0
    scored = json.loads((tmp_path / "runs" / "mine" / "eval.json").read_text())["metrics"]
    assert scored["psnr"] == pytest.approx(metrics["psnr"])
