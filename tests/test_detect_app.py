"""``python -m apps.detect``: the whole path a newcomer takes, on a tiny demo dataset.

One module-scoped run trains a small RetinaNet for two epochs, fine-tunes it with QAT and
exports every form; the tests check what each command leaves behind and that every form
is scored by the same evaluator, loads where it ships (MediaPipe, TF Serving signatures,
onnxruntime, the edge kit without TensorFlow) and gives the detections of our runtime.
"""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from conftest import ROOT

from apps.detect.task import DetectTask
from tflite.audit import require_int8
from vision_core.app.cli import main
from vision_core.detection.boxes import pairwise_iou
from vision_core.detection.runners import TFLiteRunner, load_runner

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("detect_app")]

TINY = [
    "--input-size",
    "96",
    "--backbone",
    "resnet18",
    "--neck-channels",
    "32",
    "--head-channels",
    "32",
    "--head-depth",
    "1",
    "--demo-train",
    "32",
    "--demo-val",
    "8",
    "--batch-size",
    "8",
    "--fine-tune-batch",
    "4",
    "--calibration-images",
    "8",
    "--learning-rate",
    "2e-3",
    "--crop-probability",
    "0.5",
    "--score-threshold",
    "0.001",
]  # a barely trained model: keep its weak detections to compare


def run_cli(*argv) -> None:
    """``python -m apps.detect argv`` in this process; it must succeed."""
    code = main(DetectTask(), [str(a) for a in argv])
    assert code == 0, f"apps.detect {' '.join(map(str, argv))} exited {code}"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("detect_app")
    demo = root / "demo"
    common = [*TINY, "--demo-dir", demo]
    run_cli("train", "--project", root / "runs", "--name", "tiny", "--epochs", "2", *common)
    run_dir = root / "runs" / "tiny"
    run_cli("qat", "--run", run_dir, "--steps", "3")
    run_cli("export", "--run", run_dir, "--format", "all", "--saved-models", root / "saved_models")
    return {
        "root": root,
        "dir": run_dir,
        "demo": demo,
        "exports": run_dir / "exports",
        "saved_models": root / "saved_models",
    }


def test_train_writes_the_run_folder(run):
    names = {p.relative_to(run["dir"]).as_posix() for p in run["dir"].rglob("*") if p.is_file()}
    assert {
        "config.yaml",
        "metrics.json",
        "results.csv",
        "weights/best.weights.npz",
        "weights/last.weights.npz",
        "pr_curve.png",
        "gallery.png",
    } <= names
    metrics = json.loads((run["dir"] / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and metrics["headline_metric"] == "mAP50"
    assert set(metrics["metrics"]) >= {"mAP", "mAP50", "mAP75", "AR100", "per_class"}
    assert sorted(metrics["metrics"]["per_class"]) == sorted(["circle", "square", "triangle", "cross", "star", "ring"])
    assert len((run["dir"] / "results.csv").read_text().strip().splitlines()) == 3  # header + 2 epochs


def test_qat_reports_float_and_int8_scores_from_one_evaluator(run):
    report = json.loads((run["dir"] / "qat" / "report.json").read_text())
    assert report["steps"] == 3 and len(report["job"]["losses"]) == 3
    float_row, qat_row = report["forms"]
    assert (float_row["form"], qat_row["form"]) == ("float keras", "qat_int8.tflite")
    assert {"mAP", "mAP50", "mAP75", "AR100"} <= set(float_row) & set(qat_row)
    assert report["delta_mAP50"] == pytest.approx(qat_row["mAP50"] - float_row["mAP50"])


def test_export_writes_every_form_and_the_int8_files_are_all_int8(run):
    exports = run["exports"]
    assert {p.name for p in exports.iterdir()} == {
        "detect_float32.tflite",
        "detect_int8.tflite",
        "detect_int8_qat.tflite",
        "detect.onnx",
        "detect_int8.onnx",
        "forms.json",
    }
    rows = json.loads((exports / "forms.json").read_text())
    assert [row["form"] for row in rows] == [
        "float keras",
        "detect_float32.tflite",
        "detect_int8.tflite",
        "detect_int8_qat.tflite",
        "detect.onnx",
        "detect_int8.onnx",
    ]
    assert rows[1]["num_images"] == 8 and abs(rows[1]["mAP50_delta"]) < 0.01  # float TFLite = Keras
    for name in ("detect_int8.tflite", "detect_int8_qat.tflite"):
        ops = {r.op for r in require_int8(str(exports / name))}
        assert "TFLite_Detection_PostProcess" in ops
    runner = load_runner(exports / "detect_int8_qat.tflite")
    assert isinstance(runner, TFLiteRunner) and runner.class_names == (
        "circle",
        "square",
        "triangle",
        "cross",
        "star",
        "ring",
    )


@pytest.mark.parametrize("form", ["detect_float32.tflite", "detect_int8_qat.tflite", "detect.onnx"])
def test_eval_scores_every_exported_form_with_the_same_evaluator(run, form):
    run_cli("eval", "--run", run["dir"], "--model", run["exports"] / form)
    result = json.loads((run["dir"] / f"eval_{form}.json").read_text())
    assert result["model"] == str(run["exports"] / form)
    assert (run["dir"] / f"pr_curve_{form}.png").is_file() and (run["dir"] / f"gallery_{form}.png").is_file()
    assert result["metrics"]["num_images"] == 8 and 0.0 <= result["metrics"]["mAP50"] <= 1.0


def test_float_forms_find_what_keras_finds(run):
    """Float TFLite and ONNX (from the SavedModel) give the Keras detections on the same image."""
    from vision_core.app.cli import build_parser, resolve_config
    from vision_core.app.runs import load_model

    task = DetectTask()
    config = resolve_config(task, build_parser(task).parse_args(["eval", "--run", str(run["dir"])]), run["dir"])
    keras_runner = task.runner(load_model(task, config, run["dir"] / "weights" / "best.weights.npz"), config)
    image = cv2.cvtColor(cv2.imread(str(next((run["demo"] / "val" / "images").iterdir()))), cv2.COLOR_BGR2RGB)
    expected = keras_runner(image)
    assert len(expected) > 0
    for form in ("detect_float32.tflite", "detect.onnx"):
        found = load_runner(run["exports"] / form)(image)
        top = min(len(expected), 10)
        np.testing.assert_allclose(found.scores[:top], expected.scores[:top], atol=1e-4)
        np.testing.assert_allclose(found.boxes[:top], expected.boxes[:top], atol=0.05)


def test_saved_model_signatures_agree_on_tensors_and_encoded_images(run):
    import tensorflow as tf

    versions = sorted((run["saved_models"] / "detect_tiny").iterdir())
    loaded = tf.saved_model.load(str(versions[-1]))
    image = cv2.resize(
        cv2.cvtColor(cv2.imread(str(next((run["demo"] / "val" / "images").iterdir()))), cv2.COLOR_BGR2RGB),
        (96, 96),
        interpolation=cv2.INTER_LINEAR,
    )
    png = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))[1].tobytes()
    from_bytes = loaded.signatures["serving_bytes"](image_bytes=tf.constant([png]))
    from_tensor = loaded.signatures["serving_default"](image=tf.constant(image[None] / 127.5 - 1, tf.float32))
    assert set(from_bytes) == set(from_tensor) == {"boxes", "classes", "scores", "num_detections"}
    for name in from_tensor:
        np.testing.assert_allclose(from_bytes[name].numpy(), from_tensor[name].numpy(), atol=1e-5)
    assert "detect_tiny" in (run["saved_models"] / "models.config").read_text()


def test_mediapipe_object_detector_loads_the_qat_int8_file_and_finds_what_we_find(run):
    mediapipe = pytest.importorskip("mediapipe")
    from mediapipe.tasks.python import BaseOptions, vision

    path = run["exports"] / "detect_int8_qat.tflite"
    image = cv2.cvtColor(cv2.imread(str(next((run["demo"] / "val" / "images").iterdir()))), cv2.COLOR_BGR2RGB)
    image = np.ascontiguousarray(cv2.resize(image, (96, 96), interpolation=cv2.INTER_AREA))
    options = vision.ObjectDetectorOptions(
        base_options=BaseOptions(model_asset_path=str(path)), score_threshold=0.001, max_results=100
    )
    with vision.ObjectDetector.create_from_options(options) as detector:
        found = detector.detect(mediapipe.Image(image_format=mediapipe.ImageFormat.SRGB, data=image)).detections
    ours = load_runner(path, score_threshold=0.001)(image)
    # MediaPipe merges detections of one box (per-class NMS keeps a box once per class) into one
    # detection with several categories: unfold them into (class, score, xyxy box).
    names = ("circle", "square", "triangle", "cross", "star", "ring")
    theirs = [(c.category_name, c.score, _pixel_bounds(d.bounding_box)) for d in found for c in d.categories]
    assert len(ours.scores) >= 10
    # MediaPipe's runtime may round an int8 output one step away from ours. A score step can swap
    # near-tied boxes of one class in NMS (a swapped box still overlaps the kept one by more than
    # the NMS threshold); a box step can move a pair's IoU across the threshold, so that one
    # runtime keeps box B and drops box C that B overlaps while the other drops B for a third box
    # and keeps C (measured: our square at 49/256 against MediaPipe's 54/256, IoU 0.77). So each
    # of our ten best detections must have its own MediaPipe detection of the same class, a score
    # within two steps and IoU > 0.5, or be overlapped by more than the NMS threshold (0.5) by a
    # higher-scoring MediaPipe detection of its class that suppressed it. IoU is taken with the
    # box MediaPipe's whole-pixel box stands for that is closest to ours.
    taken = set()
    for box, cls, score in zip(ours.boxes[:10], ours.classes[:10], ours.scores[:10]):
        same_class = [i for i, (name, _, _) in enumerate(theirs) if name == names[cls]]
        iou = {i: float(pairwise_iou(box[None], np.clip(box, *theirs[i][2])[None])[0, 0]) for i in same_class}
        matches = [i for i in same_class if i not in taken and abs(theirs[i][1] - score) <= 2 / 256 and iou[i] > 0.5]
        if matches:
            taken.add(max(matches, key=iou.get))
            continue
        suppressed_by = [i for i in same_class if theirs[i][1] > score and iou[i] > 0.5]
        assert suppressed_by, f"MediaPipe neither finds nor suppresses our {names[cls]} {box} at {score:.4f}"


def _pixel_bounds(box) -> tuple[np.ndarray, np.ndarray]:
    """The xyxy boxes MediaPipe's ``BoundingBox`` stands for, as (low, high) corner bounds.

    MediaPipe truncates the box's origin and its size to whole pixels, so the left edge lies in
    [origin, origin + 1] and the right edge in [origin + width, origin + width + 2] (likewise for y).
    """
    low = np.array([box.origin_x, box.origin_y, box.origin_x + box.width, box.origin_y + box.height], np.float32)
    return low, low + np.array([1, 1, 2, 2], np.float32)


def test_predict_draws_and_lists_detections(run, tmp_path):
    out = tmp_path / "predicted"
    run_cli(
        "predict",
        "--run",
        run["dir"],
        "--model",
        run["exports"] / "detect_int8_qat.tflite",
        "--out",
        out,
        run["demo"] / "val" / "images",
    )
    result = json.loads((out / "predictions.json").read_text())
    assert result["counts"]["images"] == 8 and len(list(out.glob("*.jpg"))) == 8


def test_edge_kit_runs_the_detector_without_tensorflow(run):
    image = next((run["demo"] / "val" / "images").iterdir())
    code = (
        "import runpy, sys; sys.argv = ['tflite', 'run', sys.argv[1], sys.argv[2]]; "
        "runpy.run_module('tflite', run_name='__main__')"
    )
    guard = (
        "import sys, builtins; real = builtins.__import__\n"
        "def guarded(name, *a, **k):\n"
        "    assert not name.startswith('tensorflow'), name\n"
        "    return real(name, *a, **k)\n"
        "builtins.__import__ = guarded\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", guard + code, str(run["exports"] / "detect_int8_qat.tflite"), str(image)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "detection" in result.stdout or "score" in result.stdout


def test_data_check_names_every_bad_file(tmp_path, capsys):
    from vision_core.data.detection import write_demo_dataset

    root = tmp_path / "demo"
    write_demo_dataset(root, train=6, val=2, size=64)
    annotations = json.loads((root / "train" / "annotations.json").read_text())
    (root / "train" / annotations["images"][0]["file_name"]).unlink()
    (root / "train" / annotations["images"][1]["file_name"]).write_bytes(b"not an image")
    intact = annotations["images"][2]["id"]
    box = next(a for a in annotations["annotations"] if a["image_id"] == intact)
    box["bbox"] = [50, 50, 40, 40]  # past the 64 px edge
    (root / "train" / "annotations.json").write_text(json.dumps(annotations))
    capsys.readouterr()
    code = main(DetectTask(), ["data", "check", "--data", str(root), "--input-size", "64"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and report["problems"] == 3
    assert report["train"]["counts"] == {"missing_image": 1, "unreadable_image": 1, "box_out_of_bounds": 1}
    named = {(issue["kind"], issue["path"].rsplit("/", 1)[-1]) for issue in report["train"]["issues"]}
    assert {
        ("missing_image", annotations["images"][0]["file_name"].rsplit("/", 1)[-1]),
        ("unreadable_image", annotations["images"][1]["file_name"].rsplit("/", 1)[-1]),
    } <= named
    assert report["val"]["ok"] is True
