"""The segment app end to end on tiny demo scenes: train -> qat -> export int8 (audited all-int8) -> eval of the
.tflite file by the same evaluator -> predict; and data check's exit status on a broken dataset."""

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
from vision_core.data.segmentation import DEMO_CLASSES
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
    assert run_cli("train", "--project", root / "runs", "--name", "tiny", "--epochs", 1, *common) == 0
    run = root / "runs" / "tiny"
    assert run_cli("qat", "--run", run, "--steps", 2) == 0
    assert run_cli("export", "--run", run, "--format", "int8") == 0
    return {"root": root, "run": run}


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
    assert list(rows) == ["float keras", "segment_int8.tflite", "segment_int8_qat.tflite"]
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
