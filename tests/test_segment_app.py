"""The segment app end to end on tiny demo scenes: train -> qat -> export int8 (audited all-int8), SavedModel and
ONNX -> eval of the .tflite file by the same evaluator -> predict on images and videos; the SavedModel's class map,
MediaPipe and the edge kit CLI on the int8 file; and data check's exit status on a broken dataset."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from PIL import Image

from apps.segment.config import PRESETS
from apps.segment.task import SegmentTask
from tflite.audit import require_int8
from tflite.metadata import read_metadata
from vision_core.app.cli import main
from vision_core.data.segmentation import CITYSCAPES_CLASSES, DEMO_CLASSES, VOC_CLASSES
from vision_core.data.video import VideoFrames


def run_cli(*argv) -> int:
    """``python -m apps.segment argv`` in this process; its exit status."""
    return main(SegmentTask(), [str(a) for a in argv])


def test_the_default_preset_is_the_ffnet_mobile_head_on_resnet18():
    demo = PRESETS["demo"]
    assert next(iter(PRESETS)) == "demo"
    assert (demo.model.architecture, demo.model.backbone, demo.model.ffnet_head, demo.model.upsample) == (
        "ffnet",
        "resnet18",
        "B",
        "nearest",
    )
    assert (demo.model.input_size, demo.model.output_stride, demo.dataset.data) == (96, 4, None)
    assert {"ffnet_mobile", "ffnet_gpu", "lraspp_mobilenet_v2", "deeplabv3plus_resnet50"} <= set(PRESETS)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("segment")
    common = ["--demo-dir", root / "demo", "--demo-train", 48, "--demo-val", 8, "--demo-size", 64]
    common += ["--input-size", 64, "--head-width", 0.25]
    common += ["--batch-size", 8, "--calibration-images", 8, "--gallery", 2]
    # 2 epochs at a constant 3e-3: the model draws shapes, not only background (class maps worth comparing)
    schedule = ["--epochs", 2, "--learning-rate", 0.003, "--warmup-epochs", 0, "--min-lr-ratio", 1]
    assert run_cli("train", "--project", root / "runs", "--name", "tiny", *schedule, *common) == 0
    run = root / "runs" / "tiny"
    assert run_cli("qat", "--run", run, "--steps", 2) == 0
    saved_models = root / "saved_models"
    with pytest.MonkeyPatch.context() as patch:
        # this barely trained model sits near quantization ties: its int8 ONNX (QDQ) file agrees with the int8
        # TFLite file at cosine 0.99 on the masks, the demo preset's at 0.99997 (the export's default bar 0.999)
        patch.setattr(SegmentTask, "int8_onnx_min_cosine", 0.95)
        assert run_cli("export", "--run", run, "--format", "int8", "onnx", "--saved-models", saved_models) == 0
    val = root / "demo" / "64px" / "val" / "images"
    return {"root": root, "run": run, "saved_model": saved_models / "segment_tiny" / "1", "val": val}


@pytest.mark.slow
@pytest.mark.xdist_group("segment_app")
def test_a_tiny_run_ships_all_int8_files_scored_by_the_same_evaluator(tiny_run):
    run = tiny_run["run"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["headline_metric"] == "mIoU" and metrics["metrics"]["images"] == 8
    assert metrics["metrics"]["pixels"] == 8 * 64 * 64
    assert list(metrics["metrics"]["per_class_iou"]) == list(DEMO_CLASSES)
    assert (run / "confusion_matrix.png").is_file()
    assert cv2.imread(str(run / "gallery.png")).shape == (2 * 160, 3 * 160, 3)
    rows = {row["form"]: row for row in json.loads((run / "exports" / "forms.json").read_text())}
    assert list(rows) == [
        "float keras",
        "segment_int8.tflite",
        "segment_int8_qat.tflite",
        "segment.onnx",  # held to Keras on its masks within 1e-4 by export
        "segment_int8.onnx",
    ]
    assert abs(rows["segment.onnx"]["mIoU_delta"]) < 1e-3  # at most a near-tied pixel flips
    for name in ("segment_int8.tflite", "segment_int8_qat.tflite"):
        path = run / "exports" / name
        require_int8(str(path))
        info = read_metadata(path)
        assert (info.task, info.labels, info.activation, info.outputs) == (
            "segmentation",
            list(DEMO_CLASSES),
            "none",
            {"masks": "masks"},
        )
        assert rows[name]["pixels"] == 8 * 64 * 64


@pytest.mark.slow
@pytest.mark.xdist_group("segment_app")
def test_eval_of_the_int8_file_and_predict_on_an_image_folder(tiny_run, tmp_path, capsys):
    run = tiny_run["run"]
    model = run / "exports" / "segment_int8_qat.tflite"
    assert run_cli("eval", "--run", run, "--model", model) == 0
    result = json.loads((run / "eval_segment_int8_qat.tflite.json").read_text())
    rows = {row["form"]: row for row in json.loads((run / "exports" / "forms.json").read_text())}
    assert result["metrics"]["mIoU"] == rows["segment_int8_qat.tflite"]["mIoU"]
    assert (run / "gallery_segment_int8_qat.tflite.png").is_file()
    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "wide.png"), np.full((40, 90, 3), 128, np.uint8))
    cv2.imwrite(str(images / "square.jpg"), np.full((64, 64, 3), 30, np.uint8))
    (images / "broken.png").write_bytes(b"not an image")
    capsys.readouterr()
    assert run_cli("predict", "--run", run, "--model", model, images, "--out", tmp_path / "out") == 0
    assert json.loads(capsys.readouterr().out)["images"] == 2
    predictions = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert predictions["counts"] == {"images": 2, "videos": 0, "frames": 0, "skipped": 1}
    wide = next(r for r in predictions["results"] if r["file"].endswith("wide.png"))
    assert sum(wide["pixels"].values()) == 40 * 90 and list(wide["pixels"]) == list(DEMO_CLASSES)
    mask = np.asarray(Image.open(tmp_path / "out" / wide["mask"]))
    assert mask.shape == (40, 90) and mask.max() < len(DEMO_CLASSES)
    assert [int((mask == i).sum()) for i in range(len(DEMO_CLASSES))] == list(wide["pixels"].values())


@pytest.mark.slow
@pytest.mark.xdist_group("segment_app")
def test_predict_cli_on_a_folder_with_a_video_writes_its_overlay_video_and_counts_each_frame(tiny_run, tmp_path):
    run, val = tiny_run["run"], tiny_run["root"] / "demo" / "64px" / "val" / "images"
    model = run / "exports" / "segment_int8_qat.tflite"
    clip = tmp_path / "in" / "clip.mp4"
    clip.parent.mkdir()
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 8.0, (64, 64))
    for index in range(5):
        writer.write(cv2.imread(str(val / f"{index:05d}.png")))
    writer.release()
    with VideoFrames(clip) as video:
        frames = [frame for _, frame in video]
    assert len(frames) == 5  # PNG is lossless: the frame as the video path sees it
    cv2.imwrite(str(tmp_path / "in" / "frame3.png"), cv2.cvtColor(frames[3], cv2.COLOR_RGB2BGR))
    assert run_cli("predict", "--run", run, "--model", model, tmp_path / "in", "--out", tmp_path / "out") == 0
    predictions = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert predictions["counts"] == {"images": 1, "videos": 1, "frames": 5, "skipped": 0}
    video = [r for r in predictions["results"] if r["file"] == str(clip)]
    assert [r["frame"] for r in video] == [0, 1, 2, 3, 4] and {r["overlay"] for r in video} == {"clip.mp4"}
    assert all(sum(r["pixels"].values()) == 64 * 64 for r in video)
    (image,) = [r for r in predictions["results"] if r["file"].endswith("frame3.png")]
    assert video[3]["pixels"] == image["pixels"]
    with VideoFrames(tmp_path / "out" / "clip.mp4") as overlays:
        assert overlays.fps == 8.0 and [frame.shape for _, frame in overlays] == [(64, 64, 3)] * 5
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "clip.mp4",
        "frame3.jpg",
        "frame3_mask.png",
        "predictions.json",
    ]


def test_data_check_exits_1_naming_the_bad_pair_and_train_stops_before_a_run_folder(tmp_path, capsys):
    data = tmp_path / "data"
    for split in ("train", "val"):
        (data / split / "images").mkdir(parents=True)
        (data / split / "masks").mkdir()
        cv2.imwrite(str(data / split / "images" / "a.png"), np.zeros((8, 8, 3), np.uint8))
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(data / split / "masks" / "a.png")
    Image.fromarray(np.full((8, 8), 9, np.uint8)).save(data / "val" / "masks" / "a.png")
    capsys.readouterr()
    assert run_cli("data", "check", "--data", data, "--class-names", "[bg, thing]") == 1
    report = json.loads(capsys.readouterr().out)
    assert report["problems"] == 1 and report["train"]["ok"] and report["val"]["counts"] == {"unknown_label": 1}
    with pytest.raises(SystemExit) as exited:
        run_cli("train", "--data", data, "--project", tmp_path / "runs", "--name", "nonames")
    assert exited.value.code == 2  # no class names: neither given nor in classes.yaml
    assert not (tmp_path / "runs" / "nonames").exists()


@pytest.mark.slow
@pytest.mark.xdist_group("segment_app")
def test_mediapipe_image_segmenter_loads_the_int8_export_and_its_category_mask_is_our_argmax(tiny_run):
    mediapipe = pytest.importorskip("mediapipe")
    from mediapipe.tasks.python import BaseOptions, vision

    from vision_core.data.detection.images import read_image
    from vision_core.segmentation.evaluate import class_maps
    from vision_core.segmentation.runners import load_segmenter_runner

    model = tiny_run["run"] / "exports" / "segment_int8_qat.tflite"
    options = vision.ImageSegmenterOptions(
        base_options=BaseOptions(model_asset_path=str(model)), output_category_mask=True
    )
    ours = load_segmenter_runner(model)  # mean/std from the file's metadata
    with vision.ImageSegmenter.create_from_options(options) as segmenter:
        assert segmenter.labels == list(DEMO_CLASSES)
        for name in ("00000.png", "00001.png", "00002.png"):
            image = np.ascontiguousarray(read_image(tiny_run["root"] / "demo" / "64px" / "val" / "images" / name))
            result = segmenter.segment(mediapipe.Image(image_format=mediapipe.ImageFormat.SRGB, data=image))
            category = result.category_mask.numpy_view().reshape(image.shape[:2])
            (expected,) = class_maps(ours, [image], 64, 127.5, 127.5)
            np.testing.assert_array_equal(category, expected)


def normalized(images: np.ndarray) -> np.ndarray:
    return ((images.astype(np.float32) - 127.5) / 127.5).astype(np.float32)


@pytest.mark.slow
@pytest.mark.xdist_group("segment_app")
def test_both_serving_signatures_return_the_class_map_of_the_keras_model(tiny_run):
    from vision_core.app.runs import load_model, run_config, weights_path
    from vision_core.backend import tf
    from vision_core.data.detection.images import read_image
    from vision_core.export.onnx_export import ONNXModel
    from vision_core.quant.convert import output_dict

    task = SegmentTask()
    config = run_config(task, tiny_run["run"])
    keras_model = task.inference_model(load_model(task, config, weights_path(tiny_run["run"])), config)
    images = np.stack([read_image(tiny_run["val"] / f"{i:05d}.png") for i in range(4)])  # 64 px: the model's size
    masks = np.asarray(output_dict(keras_model, keras_model(normalized(images), training=False))["masks"])
    expected = masks.argmax(-1)
    pngs = [cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))[1].tobytes() for image in images]
    loaded = tf.saved_model.load(str(tiny_run["saved_model"]))
    served = {
        "serving_default": loaded.signatures["serving_default"](image=tf.constant(normalized(images))),
        "serving_bytes": loaded.signatures["serving_bytes"](image_bytes=tf.constant(pngs)),
    }
    for signature, outputs in served.items():
        outputs = {name: tensor.numpy() for name, tensor in outputs.items()}
        assert set(outputs) == {"masks", "class_map"}, signature
        assert (outputs["class_map"].dtype, outputs["class_map"].shape) == (np.int32, (4, 64, 64)), signature
        np.testing.assert_array_equal(outputs["class_map"], outputs["masks"].argmax(-1), err_msg=signature)
        # the same float32 graph, fused differently by the SavedModel: logits of +-50 differ by ~1e-5 relative
        np.testing.assert_allclose(outputs["masks"], masks, atol=1e-4, err_msg=signature)
        np.testing.assert_array_equal(outputs["class_map"], expected, err_msg=signature)
    onnx = ONNXModel(tiny_run["run"] / "exports" / "segment.onnx")(normalized(images))
    np.testing.assert_array_equal(onnx["class_map"], expected)


@pytest.mark.slow
@pytest.mark.xdist_group("segment_app")
def test_the_edge_kit_cli_reports_the_pixel_shares_of_our_runtimes_argmax(tiny_run):
    from conftest import run_python

    from vision_core.data.detection.images import read_image
    from vision_core.segmentation.evaluate import class_maps
    from vision_core.segmentation.runners import load_segmenter_runner

    model = tiny_run["run"] / "exports" / "segment_int8_qat.tflite"
    paths = [tiny_run["val"] / f"{i:05d}.png" for i in range(4)]
    result = run_python(["-m", "tflite", "run", str(model), *map(str, paths), "--json", "--top-k", "10"], timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert (report["task"], [r["image"] for r in report["results"]]) == ("segmentation", list(map(str, paths)))
    ours = load_segmenter_runner(model)  # mean/std from the file's metadata
    for path, found in zip(paths, report["results"]):
        (class_map,) = class_maps(ours, [read_image(path)], 64, 127.5, 127.5)
        counts = np.bincount(class_map.ravel(), minlength=len(DEMO_CLASSES))
        shares = {DEMO_CLASSES[i]: counts[i] / class_map.size for i in np.flatnonzero(counts)}
        assert {label["label"]: label["score"] for label in found["labels"]} == shares, path.name


def _voc_and_cityscapes(root, scenes):
    """The demo scenes as a Pascal VOC root (palette masks, split lists) and a Cityscapes root (label ids)."""
    from vision_core.data.detection.images import read_image

    voc, city = root / "VOC2012", root / "cityscapes"
    for split, names in (("train", range(8)), ("val", range(8, 10))):
        stems = []
        for index in names:
            image = read_image(scenes / "images" / f"{index:05d}.png")
            mask = np.asarray(Image.open(scenes / "masks" / f"{index:05d}.png"))
            stem = f"2007_{index:06d}"
            stems.append(stem)
            (voc / "JPEGImages").mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(voc / "JPEGImages" / f"{stem}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            palette = Image.fromarray(mask.astype(np.uint8), mode="P")
            palette.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0, 0, 0, 128] + [0, 0, 0] * 251)
            (voc / "SegmentationClass").mkdir(exist_ok=True)
            palette.save(voc / "SegmentationClass" / f"{stem}.png")
            name = f"aachen_{index:06d}_000019"
            images, labels = (city / d / split / "aachen" for d in ("leftImg8bit", "gtFine"))
            images.mkdir(parents=True, exist_ok=True)
            labels.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(images / f"{name}_leftImg8bit.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            label_ids = np.array([7, 11, 24, 26, 33], np.uint8)[mask]  # road building person car bicycle
            Image.fromarray(label_ids, mode="L").save(labels / f"{name}_gtFine_labelIds.png")
        (voc / "ImageSets" / "Segmentation").mkdir(parents=True, exist_ok=True)
        (voc / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(stems) + "\n")
    return voc, city


@pytest.mark.slow
@pytest.mark.xdist_group("segment_app")
@pytest.mark.parametrize("layout", ["voc", "cityscapes"])
def test_data_check_train_and_eval_on_a_voc_and_a_cityscapes_folder(tiny_run, tmp_path, layout, capsys):
    voc, city = _voc_and_cityscapes(tmp_path, tiny_run["root"] / "demo" / "64px" / "train")
    root = voc if layout == "voc" else city
    tiny = ["--data", root, "--input-size", 32, "--head-width", 0.25, "--batch-size", 4]
    capsys.readouterr()
    assert run_cli("data", *tiny) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["problems"] == 0
    assert run_cli("train", "--project", tmp_path / "runs", "--name", layout, "--epochs", 1, *tiny) == 0
    metrics = json.loads((tmp_path / "runs" / layout / "metrics.json").read_text())["metrics"]
    names = VOC_CLASSES if layout == "voc" else CITYSCAPES_CLASSES
    assert list(metrics["per_class_iou"]) == list(names) and 0.0 <= metrics["mIoU"] <= 1.0
    assert metrics["images"] == 2
