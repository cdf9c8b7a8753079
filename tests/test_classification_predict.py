"""Classifying image files: top-k probabilities in predictions.json, a drawn copy per image, bad files skipped.

The runner here scores an image by its mean colour (logits = channel means of the normalised
image), so a red image is class "red"; every file is written into ``tmp_path``.
"""

import json

import cv2
import numpy as np

from vision_core.classification.predict import predict_images, to_probabilities
from vision_core.classification.runners import ClassifierRunner

NAMES = ("red", "green", "blue")
COLOURS = {"red": (250, 0, 0), "green": (0, 200, 0), "blue": (0, 0, 150)}


class MeanColourRunner(ClassifierRunner):
    """Logits [N, 3] = the mean of each channel of the normalised images; counts its calls."""

    def __init__(self):
        super().__init__("mean colour", None)
        self.batches = []

    def run(self, images: np.ndarray) -> np.ndarray:
        self.batches.append(len(images))
        return images.mean(axis=(1, 2))


def write_image(path, rgb, size=(30, 40)):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((*size, 3), rgb[::-1], np.uint8))
    return path


def test_predictions_list_top_k_probabilities_and_draw_each_image(tmp_path):
    folder = tmp_path / "images"
    write_image(folder / "a" / "x.png", COLOURS["red"])
    write_image(folder / "b" / "deeper" / "x.png", COLOURS["blue"])
    write_image(folder / "green.jpg", COLOURS["green"])
    (folder / "notes.txt").write_text("not an image")
    runner = MeanColourRunner()
    counts = predict_images(
        runner, folder, tmp_path / "out", NAMES, 16, 127.5, 127.5, top_k=2, batch_size=2, progress=False
    )
    assert counts == {"images": 3, "skipped": 0} and runner.batches == [2, 1]
    content = json.loads((tmp_path / "out" / "predictions.json").read_text())
    results = {result["file"]: result for result in content["results"]}
    assert list(results) == [
        str(folder / "a" / "x.png"),
        str(folder / "b" / "deeper" / "x.png"),
        str(folder / "green.jpg"),
    ]
    assert [r["top"][0]["label"] for r in results.values()] == ["red", "blue", "green"]
    assert [r["output"] for r in results.values()] == ["x.jpg", "x_2.jpg", "green.jpg"]
    red = results[str(folder / "a" / "x.png")]
    assert (red["width"], red["height"], len(red["top"])) == (40, 30, 2)
    # softmax of the channel means (250, 0, 0) / 127.5 - 1
    logits = np.array([250, 0, 0]) / 127.5 - 1
    expected = np.exp(logits) / np.exp(logits).sum()
    assert [t["index"] for t in red["top"]] == [0, 1]
    np.testing.assert_allclose([t["score"] for t in red["top"]], expected[:2], atol=1e-5)
    drawn = cv2.imread(str(tmp_path / "out" / "x.jpg"))
    assert drawn.shape == (30, 40, 3)
    assert content["class_names"] == list(NAMES) and content["counts"] == counts


def test_unreadable_files_and_missing_sources_are_skipped_and_named(tmp_path):
    good = write_image(tmp_path / "good.png", COLOURS["green"])
    broken = tmp_path / "broken.png"
    broken.write_bytes(good.read_bytes()[:40])
    (tmp_path / "notes.txt").write_text("not an image")
    counts = predict_images(
        MeanColourRunner(),
        [good, broken, tmp_path / "gone.png", tmp_path / "notes.txt"],
        tmp_path / "out",
        NAMES,
        16,
        127.5,
        127.5,
        progress=False,
    )
    assert counts == {"images": 1, "skipped": 3}
    skipped = json.loads((tmp_path / "out" / "predictions.json").read_text())["skipped"]
    assert skipped[str(tmp_path / "gone.png")] == "no such file or folder"
    assert skipped[str(tmp_path / "notes.txt")] == "not an image (suffix '.txt')"
    assert skipped[str(broken)] == f"{broken}: not a readable image (corrupt, truncated or unsupported)"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.jpg", "predictions.json"]


def test_probabilities_are_kept_and_logits_softmaxed():
    probabilities = np.array([[0.7, 0.2, 0.1], [0.0, 0.0, 1.0]], np.float32)
    np.testing.assert_array_equal(to_probabilities(probabilities), probabilities)
    np.testing.assert_allclose(to_probabilities(np.log(probabilities[:1]) + 5.0), probabilities[:1], rtol=1e-6)
    uint8_output = np.array([[0.69921875, 0.19921875, 0.08984375]], np.float32)  # quantized, sums to 0.988
    np.testing.assert_array_equal(to_probabilities(uint8_output), uint8_output)
