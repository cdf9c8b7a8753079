"""Video frames in, video frames out: RGB frames in order, strides, and atomic mp4v outputs."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from vision_core.data.video import UnreadableVideoError, VideoFrames, VideoOutput

SHADES = (0, 60, 120, 180, 240)


def write_clip(path, size=(16, 24)):
    """One grey frame per shade (MJPG AVI: decodes within a few grey levels), then red in channel R."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 12.0, (size[1], size[0]))
    for shade in SHADES:
        frame = np.full((*size, 3), shade, np.uint8)
        frame[..., 2] = 255  # BGR: red
        writer.write(frame)
    writer.release()
    return path


def test_frames_come_as_rgb_in_order_and_a_stride_keeps_their_indices(tmp_path):
    clip = write_clip(tmp_path / "clip.avi")
    with VideoFrames(clip) as video:
        assert (video.fps, video.frame_count) == (12.0, 5)
        frames = list(video)
    assert [index for index, _ in frames] == [0, 1, 2, 3, 4]
    assert all(frame.shape == (16, 24, 3) and frame.dtype == np.uint8 for _, frame in frames)
    reds = [frame[..., 0].mean() for _, frame in frames]  # red is channel 0
    greens = [frame[..., 1].mean() for _, frame in frames]
    assert np.abs(np.subtract(reds, 255)).max() <= 3 and np.abs(np.subtract(greens, SHADES)).max() <= 3
    with VideoFrames(clip, stride=2) as video:
        assert [index for index, _ in video] == [0, 2, 4]


def test_the_output_appears_only_when_complete_and_an_error_leaves_nothing(tmp_path):
    clip = write_clip(tmp_path / "clip.avi")
    out = tmp_path / "out" / "result.mp4"
    with pytest.raises(RuntimeError, match="model failed"):
        with VideoFrames(clip) as video, VideoOutput(out, video.fps) as output:
            for index, frame in video:
                output.write(frame)
                assert output.partial.is_file() and not out.exists()
                if index == 2:
                    raise RuntimeError("model failed")
    assert list((tmp_path / "out").iterdir()) == []
    with VideoFrames(clip) as video, VideoOutput(out, video.fps) as output:
        for _, frame in video:
            output.write(frame)
    assert list((tmp_path / "out").iterdir()) == [out] and output.frames == 5
    with VideoFrames(out) as written:
        assert written.fps == 12.0 and len(list(written)) == 5


def test_a_file_that_is_no_video_is_named_in_the_error(tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    with pytest.raises(UnreadableVideoError, match="broken.mp4"):
        with VideoFrames(broken) as video:
            list(video)
