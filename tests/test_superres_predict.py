"""Super-resolution prediction on images, folders and videos: sizes, colour kept by Y models, frame counts."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from apps.superres.models import build_espcn
from vision_core.superres.predict import predict_sources
from vision_core.superres.runners import load_sr_runner


def nearest_model(channels: int):
    """ESPCN x2 whose sub-pixel conv is zero: with the residual it upscales by pixel replication."""
    model = build_espcn(2, channels, features=(4,), kernels=(3, 3), residual=True)
    conv = model.get_layer("subpixel_conv")
    conv.set_weights([np.zeros_like(w) for w in conv.get_weights()])
    return model


def write_png(path, rgb):
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


@pytest.mark.parametrize("colour, channels", [("y", 1), ("rgb", 3)])
def test_images_are_upscaled_and_keep_their_colour(tmp_path, colour, channels):
    (tmp_path / "in").mkdir()
    orange = np.zeros((6, 8, 3), np.uint8)
    orange[:] = (230, 120, 30)
    write_png(tmp_path / "in" / "orange.png", orange)
    result = predict_sources(load_sr_runner(nearest_model(channels)), [tmp_path / "in"], tmp_path / "out", colour)
    assert result["images"] == 1 and result["results"] == [
        {"source": str(tmp_path / "in" / "orange.png"), "output": "orange_x2.png"}
    ]
    output = cv2.cvtColor(cv2.imread(str(tmp_path / "out" / "orange_x2.png")), cv2.COLOR_BGR2RGB)
    assert output.shape == (12, 16, 3)
    assert np.abs(output.astype(int) - (230, 120, 30)).max() <= 1  # Y round trip: within a grey level


def test_a_video_is_upscaled_frame_by_frame_and_bad_sources_are_skipped(tmp_path):
    writer = cv2.VideoWriter(str(tmp_path / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (16, 8))
    for value in range(0, 250, 50):
        writer.write(np.full((8, 16, 3), value, np.uint8))
    writer.release()
    (tmp_path / "notes.txt").write_text("not an image")
    sources = [tmp_path / "clip.avi", tmp_path / "notes.txt", tmp_path / "missing.png"]
    result = predict_sources(load_sr_runner(nearest_model(1)), sources, tmp_path / "out", "y")
    assert (result["videos"], result["frames"]) == (1, 5)
    assert result["skipped"] == {
        str(tmp_path / "notes.txt"): "not an image or video (suffix '.txt')",
        str(tmp_path / "missing.png"): "no such file or folder",
    }
    entry = result["results"][0]
    assert entry["output"] == "clip_x2.mp4" and entry["frames"] == 5
    capture = cv2.VideoCapture(str(tmp_path / "out" / "clip_x2.mp4"))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    assert len(frames) == 5 and frames[0].shape == (16, 32, 3)
    assert json.loads((tmp_path / "out" / "predictions.json").read_text())["frames"] == 5
