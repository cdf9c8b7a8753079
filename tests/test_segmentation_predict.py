"""Segmentation predict on images and videos with a colour rule for a model: per-frame counts as the image path's."""

from __future__ import annotations

import json

import cv2
import numpy as np

from vision_core.data.video import VideoFrames
from vision_core.segmentation.draw import class_colors
from vision_core.segmentation.predict import RESULTS_FILE, predict_sources

NAMES = ("background", "red", "green")


def colour_runner(images: np.ndarray) -> np.ndarray:
    """Scores [N, S, S, 3] of normalised RGB images: class 1 where red exceeds green by over 0.5 (64 grey levels),
    2 where green exceeds red so, else 0."""
    difference = images[..., 0] - images[..., 1]
    return np.stack([np.full_like(difference, 0.5), difference, -difference], -1)


def write_clip(path, frames: int = 6, size=(36, 52)):
    """Grey frames with a red box growing from the left and a green one from the right (mp4v)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (size[1], size[0]))
    for index in range(frames):
        frame = np.full((*size, 3), 128, np.uint8)
        frame[4:20, 2 : 8 + 4 * index] = (0, 0, 230)  # BGR
        frame[18:34, 44 - 3 * index : 50] = (0, 230, 0)
        writer.write(frame)
    writer.release()
    return path


def predict(sources, out_dir):
    return predict_sources(colour_runner, sources, out_dir, NAMES, class_colors(3), 32, 127.5, 127.5, progress=False)


def test_every_video_frame_is_counted_as_the_same_frame_saved_as_an_image(tmp_path):
    clip = write_clip(tmp_path / "clip.mp4")
    with VideoFrames(clip) as video:
        frames = [frame for _, frame in video]
    assert len(frames) == 6
    images = tmp_path / "frames"
    images.mkdir()
    for index, frame in enumerate(frames):  # PNG is lossless: each frame as the video path decodes it
        cv2.imwrite(str(images / f"frame{index}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    counts = predict([clip, images], tmp_path / "out")
    assert counts == {"images": 6, "videos": 1, "frames": 6, "skipped": 0}
    results = json.loads((tmp_path / "out" / RESULTS_FILE).read_text())["results"]
    video = [r for r in results if r["file"] == str(clip)]
    stills = {r["file"]: r for r in results if "frame" not in r}
    assert [r["frame"] for r in video] == list(range(6))
    for entry in video:
        assert (entry["overlay"], entry["width"], entry["height"]) == ("clip.mp4", 52, 36)
        assert entry["pixels"] == stills[str(images / f"frame{entry['frame']}.png")]["pixels"]
    reds = [r["pixels"]["red"] for r in video]
    greens = [r["pixels"]["green"] for r in video]
    assert reds == sorted(reds) and greens == sorted(greens) and reds[0] < reds[-1] and greens[0] < greens[-1]
    with VideoFrames(tmp_path / "out" / "clip.mp4") as written:
        assert written.fps == 10.0 and [f.shape for _, f in written] == [(36, 52, 3)] * 6


def test_a_broken_video_is_skipped_by_name_and_leaves_no_output(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "broken.mp4").write_bytes(b"not a video at all")
    (tmp_path / "in" / "notes.txt").write_text("ignored in a folder")
    counts = predict([tmp_path / "in", tmp_path / "notes.md"], tmp_path / "out")
    assert counts == {"images": 0, "videos": 0, "frames": 0, "skipped": 2}
    skipped = json.loads((tmp_path / "out" / RESULTS_FILE).read_text())["skipped"]
    assert list(skipped) == [str(tmp_path / "notes.md"), str(tmp_path / "in" / "broken.mp4")]
    assert "broken.mp4" in skipped[str(tmp_path / "in" / "broken.mp4")]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [RESULTS_FILE]
