"""The detect app's task without training: data checks, settings checked before a run starts, and the
pictures of an evaluation (a stand-in runner finds one fixed box per image)."""

import json

import cv2
import numpy as np
import pytest

from apps.detect.task import DetectTask
from tflite.draw import PALETTE
from vision_core.app.cli import main
from vision_core.app.config import resolve
from vision_core.data.detection import write_demo_dataset
from vision_core.detection.detector_io import Detections
from vision_core.detection.runners import DetectorRunner


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A demo dataset of 4 train and 2 val images of 64 px: ``root/{train,val}/annotations.json``."""
    root = tmp_path_factory.mktemp("detect_task") / "demo"
    write_demo_dataset(root, train=4, val=2, size=64)
    return root


class TopLeftRunner(DetectorRunner):
    """Finds one box of class 0 scoring 0.9 in every image: its top-left quarter (xyxy pixels)."""

    def __init__(self):
        super().__init__((64, 64))

    def __call__(self, image):
        height, width = image.shape[:2]
        return Detections(
            np.array([[0, 0, width / 2, height / 2]], np.float32), np.array([0], np.int32), np.array([0.9], np.float32)
        )

    def run(self, pixels):
        raise AssertionError("__call__ answers without a model")


def test_data_check_of_one_annotation_file_checks_it_alone(tmp_path, capsys):
    data = write_demo_dataset(tmp_path / "demo", train=3, val=1, size=64)["train"]
    missing = json.loads(data.read_text())["images"][0]["file_name"]
    (data.parent / missing).unlink()
    capsys.readouterr()
    assert main(DetectTask(), ["data", "check", "--data", str(data)]) == 1
    report = json.loads(capsys.readouterr().out)
    assert sorted(report) == ["problems", "train"] and report["problems"] == 1
    assert (report["train"]["source"], report["train"]["images"]) == (str(data), 3)
    assert [(issue["kind"], issue["path"]) for issue in report["train"]["issues"]] == [
        ("missing_image", str(data.parent / missing))
    ]


def test_training_on_one_annotation_file_asks_for_val_and_leaves_no_run_folder(demo, tmp_path, capsys):
    data = demo / "train" / "annotations.json"
    with pytest.raises(SystemExit) as exit_:
        main(DetectTask(), ["train", "--project", str(tmp_path), "--data", str(data)])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (
        f"python -m apps.detect train: error: --data {data} is one annotation file: give the validation split "
        "with --val (and --val-images if its images live elsewhere)\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_training_on_a_missing_file_exits_2_naming_it_and_leaves_no_run_folder(tmp_path, capsys):
    missing = tmp_path / "missing.json"
    project = tmp_path / "runs"
    for _ in range(2):  # a second try would be named exp2 if the first had left exp behind
        with pytest.raises(SystemExit) as exit_:
            main(DetectTask(), ["train", "--project", str(project), "--data", str(missing)])
        assert exit_.value.code == 2
        assert capsys.readouterr().err == f"python -m apps.detect train: error: {missing}: no such file or folder\n"
    assert not project.exists()


def test_plots_draw_the_pr_curves_and_a_gallery_of_the_val_images(demo, tmp_path):
    task = DetectTask()
    config = resolve(task.presets, flags={"dataset.data": str(demo)})
    runner = TopLeftRunner()
    metrics = task.evaluate(runner, config)
    written = task.plots(runner, config, metrics, tmp_path, "_top_left.tflite")
    assert written == {
        "pr_curve": tmp_path / "pr_curve_top_left.tflite.png",
        "gallery": tmp_path / "gallery_top_left.tflite.png",
    }
    assert cv2.imread(str(written["pr_curve"])).shape == (500, 700, 3)
    gallery = cv2.imread(str(written["gallery"]))
    assert gallery.shape == (256, 4 * 256, 3)  # 2 val images in a row of 4 cells of 256 px
    # each 64 px image fills its cell (x4): the found box's right edge is at x = 128, in class 0's colour
    class_0 = PALETTE[0]
    for cell in range(2):
        edge = gallery[40:90, cell * 256 + 126 : cell * 256 + 131]
        assert (edge == class_0).all(axis=-1).any(), f"cell {cell}"
    assert not (gallery[:, 2 * 256 :] != 40).any()  # the two empty cells stay background
