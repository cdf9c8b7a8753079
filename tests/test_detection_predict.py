"""Prediction on images, folders and videos: drawn outputs, one JSON, unreadable files skipped and counted."""

import json

import cv2
import numpy as np
import pytest

from vision_core.detection.detector_io import Detections
from vision_core.detection.predict import RESULTS_FILE, predict

NAMES = ("green", "red")


class _ColourRunner:
    """A fake detector: one box (2, 3, 12, 13) of class 1 "red" when the image is mostly red, else 0 "green",
    score .9, and a second box scoring .1 (below the threshold); records the sizes of the images it saw."""

    def __init__(self):
        self.seen = []

    def __call__(self, image):
        self.seen.append(image.shape)
        red = int(image[..., 0].mean() > image[..., 1].mean())
        return Detections([[2, 3, 12, 13], [0, 0, 5, 5]], [red, 0], [0.9, 0.1])


def _write_image(path, rgb, size=(40, 60)):
    cv2.imwrite(str(path), cv2.cvtColor(np.full((*size, 3), rgb, np.uint8), cv2.COLOR_RGB2BGR))


def _write_video(path, frames=5, size=(48, 64)):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (size[1], size[0]))
    for index in range(frames):  # red frames, but frame 1 and 3 green
        writer.write(np.full((*size, 3), (0, 200, 0) if index % 2 else (0, 0, 200), np.uint8))
    writer.release()


@pytest.fixture
def inputs(tmp_path):
    folder = tmp_path / "inputs"
    folder.mkdir()
    _write_image(folder / "b_red.png", (220, 10, 10))
    _write_image(folder / "a_green.jpg", (10, 220, 10), size=(30, 20))
    (folder / "c_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder / "notes.txt").write_text("not an image")
    _write_video(folder / "d_clip.mp4")
    return folder


def test_predict_on_a_folder_writes_drawn_files_and_the_json(inputs, tmp_path, caplog):
    runner = _ColourRunner()
    report = predict(runner, [inputs], tmp_path / "out", class_names=NAMES, frame_stride=2, progress=False)

    content = json.loads((tmp_path / "out" / RESULTS_FILE).read_text())
    assert report.json_path == tmp_path / "out" / RESULTS_FILE
    assert content["counts"] == {"images": 2, "videos": 1, "frames": 3, "skipped": 1} == report.counts()
    assert content["box_format"] == "xyxy pixels of the original image" and content["class_names"] == list(NAMES)
    assert list(content["skipped"]) == [str(inputs / "c_corrupt.png")]
    assert "c_corrupt.png" in content["skipped"][str(inputs / "c_corrupt.png")] and "c_corrupt.png" in caplog.text

    results = content["results"]
    assert [(r["file"], r.get("frame")) for r in results] == [
        (str(inputs / "a_green.jpg"), None),
        (str(inputs / "b_red.png"), None),
        (str(inputs / "d_clip.mp4"), 0),
        (str(inputs / "d_clip.mp4"), 2),
        (str(inputs / "d_clip.mp4"), 4),
    ]
    assert results[0] == {
        "file": str(inputs / "a_green.jpg"),
        "width": 20,
        "height": 30,
        "output": "a_green.jpg",
        "boxes": [[2.0, 3.0, 12.0, 13.0]],
        "classes": [0],
        "names": ["green"],
        "scores": [0.9],
    }
    assert results[1]["names"] == ["red"] and results[1]["output"] == "b_red.jpg"
    # frames 0, 2, 4 are red (the stride skips the green ones), 64 x 48
    assert [(r["names"], r["width"], r["height"], r["output"]) for r in results[2:]] == [
        (["red"], 64, 48, "d_clip.mp4")
    ] * 3
    assert len(runner.seen) == 5

    drawn = cv2.imread(str(tmp_path / "out" / "a_green.jpg"))
    assert drawn.shape == (30, 20, 3)
    video = cv2.VideoCapture(str(tmp_path / "out" / "d_clip.mp4"))
    assert video.isOpened() and int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    assert (int(video.get(cv2.CAP_PROP_FRAME_WIDTH)), int(video.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (64, 48)
    video.release()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "a_green.jpg",
        "b_red.jpg",
        "d_clip.mp4",
        RESULTS_FILE,
    ]


def test_listed_files_keep_their_order_and_bad_ones_are_named(inputs, tmp_path):
    (inputs / "broken.mp4").write_bytes(b"not a video at all")
    sources = [
        inputs / "b_red.png",
        tmp_path / "missing.png",
        inputs / "notes.txt",
        inputs / "broken.mp4",
        inputs / "a_green.jpg",
    ]
    report = predict(_ColourRunner(), sources, tmp_path / "out", progress=False)
    assert [r["file"] for r in report.results] == [str(inputs / "b_red.png"), str(inputs / "a_green.jpg")]
    assert report.results[0]["names"] == ["class 1"]  # no class names given: ids stand in
    assert set(report.skipped) == {str(tmp_path / "missing.png"), str(inputs / "notes.txt"), str(inputs / "broken.mp4")}
    assert report.skipped[str(tmp_path / "missing.png")] == "no such file or folder"
    assert "suffix '.txt'" in report.skipped[str(inputs / "notes.txt")]
    assert "broken.mp4" in report.skipped[str(inputs / "broken.mp4")]
    assert report.counts() == {"images": 2, "videos": 0, "frames": 0, "skipped": 3}


def test_two_sources_with_one_stem_get_numbered_outputs(tmp_path):
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
        _write_image(tmp_path / folder / "same.png", (200, 0, 0))
    report = predict(_ColourRunner(), [tmp_path / "x", tmp_path / "y"], tmp_path / "out", progress=False)
    assert [r["output"] for r in report.results] == ["same.jpg", "same_2.jpg"]
    assert (tmp_path / "out" / "same_2.jpg").is_file()
