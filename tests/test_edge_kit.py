"""``python -m tflite run | bench | inspect`` on exported models, in processes without TensorFlow."""

import json

import cv2
import numpy as np
import pytest
from conftest import last_json_line, run_python
from tiny_models import (
    DETECTOR_BOXES,
    DETECTOR_CLASSES,
    DETECTOR_SCORES,
    LABELS,
    TINY_CLASSIFIER_MACS,
    calibration,
    classifier_info,
    constant_detector,
    shapes,
    tiny_classifier,
)

from tflite.cli import main
from tflite.macs import count_macs
from tflite.metadata import ModelInfo
from tflite.predict import Predictor, read_image
from vision_core.export.tflite_export import export_tflite
from vision_core.quant.convert import convert


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    """An int8 classifier, a float constant detector, a bare model and images (one 48x40, one 32x32, one corrupt)."""
    folder = tmp_path_factory.mktemp("edge_kit")
    images = shapes(2, seed=11)[0]
    paths = {"wide": folder / "wide.png", "small": folder / "small.jpg", "corrupt": folder / "corrupt.png"}
    cv2.imwrite(str(paths["wide"]), cv2.resize(images[0], (48, 40))[..., ::-1])
    cv2.imwrite(str(paths["small"]), images[1][..., ::-1])
    paths["corrupt"].write_bytes(b"not an image")
    paths["bare"] = folder / "bare.tflite"
    paths["bare"].write_bytes(convert(tiny_classifier(), "float32"))
    paths["classifier"] = export_tflite(
        tiny_classifier(), folder / "classifier.tflite", "int8", calibration(), info=classifier_info()
    )
    paths["detector"] = export_tflite(
        constant_detector(),
        folder / "detector.tflite",
        "float32",
        info=ModelInfo("detection", "constant_detector", LABELS),
    )
    return {k: str(v) for k, v in paths.items()}


def test_run_prints_the_top_k_labels_of_each_image_as_json(kit):
    result = run_python(["-m", "tflite", "run", kit["classifier"], kit["wide"], kit["small"], "--top-k", "2", "--json"])
    assert result.returncode == 0, result.stderr
    report = last_json_line(result.stdout)
    assert report["task"] == "classification"
    assert [r["image"] for r in report["results"]] == [kit["wide"], kit["small"]]
    predictor = Predictor(kit["classifier"])
    for entry in report["results"]:
        assert entry["labels"] == predictor(read_image(entry["image"])).labels[:2]
        assert entry["labels"][0]["score"] >= entry["labels"][1]["score"]


def test_run_draws_each_prediction_at_the_image_size(kit, tmp_path):
    result = run_python(["-m", "tflite", "run", kit["classifier"], kit["wide"], "--draw", str(tmp_path / "out")])
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{kit['wide']}: ")
    drawn = cv2.imread(str(tmp_path / "out" / "wide.png"))
    assert drawn.shape == (40, 48, 3)


def test_run_gives_detection_boxes_in_image_pixels(kit, tmp_path):
    result = run_python(
        ["-m", "tflite", "run", kit["detector"], kit["wide"], "--threshold", "0.5", "--json", "--draw", str(tmp_path)]
    )
    assert result.returncode == 0, result.stderr
    (entry,) = last_json_line(result.stdout)["results"]
    expected = [
        {
            "index": int(DETECTOR_CLASSES[i]),
            "label": LABELS[int(DETECTOR_CLASSES[i])],
            "score": DETECTOR_SCORES[i],
            "box": [
                DETECTOR_BOXES[i][1] * 48,
                DETECTOR_BOXES[i][0] * 40,
                DETECTOR_BOXES[i][3] * 48,
                DETECTOR_BOXES[i][2] * 40,
            ],
        }
        for i in (0, 1)
    ]
    assert [d["label"] for d in entry["labels"]] == [d["label"] for d in expected]
    for got, want in zip(entry["labels"], expected):
        assert got["index"] == want["index"]
        np.testing.assert_allclose([got["score"], *got["box"]], [want["score"], *want["box"]], atol=1e-4)
    assert (tmp_path / "wide.png").is_file()


def test_inspect_lists_io_quantization_ops_and_metadata(kit):
    result = run_python(["-m", "tflite", "inspect", kit["classifier"], "--json"])
    assert result.returncode == 0, result.stderr
    report = last_json_line(result.stdout)
    (image,), (probabilities,) = report["inputs"], report["outputs"]
    assert (image["name"], image["dtype"], image["shape"]) == ("image", "uint8", [1, 32, 32, 3])
    assert image["scale"] == pytest.approx(1 / 127.5) and image["zero_point"] in (127, 128)
    assert (probabilities["name"], probabilities["dtype"]) == ("probabilities", "uint8")
    assert report["float_ops"] == 0 and {"CONV_2D", "DEPTHWISE_CONV_2D", "SOFTMAX"} <= {o["op"] for o in report["ops"]}
    assert report["info"]["labels"] == LABELS and report["info"]["input_range"] == [-1.0, 1.0]
    assert report["associated_files"] == ["labels.txt", "vision_suite.json"]
    assert report["metadata"]["subgraph_metadata"][0]["output_tensor_metadata"][0]["name"] == "probabilities"
    text = run_python(["-m", "tflite", "inspect", kit["classifier"]])
    assert "scale=0.00784314" in text.stdout and "labels (4): circle, square, triangle, cross" in text.stdout


def test_bench_reports_latency_fps_and_gmacs_per_thread_count(kit, tmp_path):
    out = tmp_path / "bench.json"
    result = run_python(
        [
            "-m",
            "tflite",
            "bench",
            kit["classifier"],
            "--threads",
            "1,2",
            "--warmup",
            "2",
            "--runs",
            "5",
            "--json",
            str(out),
        ]
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["macs"] == TINY_CLASSIFIER_MACS and report["runs"] == 5
    assert [r["threads"] for r in report["results"]] == [1, 2]
    for row in report["results"]:
        assert 0 < row["p50_ms"] <= row["p90_ms"]
        assert row["fps"] > 0 and row["gmacs_per_s"] == pytest.approx(report["macs"] / row["p50_ms"] / 1e6)
    assert "p50 ms" in result.stdout


def test_mac_count_of_conv_depthwise_and_dense_ops_is_exact(kit):
    assert count_macs(open(kit["bare"], "rb").read()) == TINY_CLASSIFIER_MACS


@pytest.mark.parametrize(
    "case, message",
    [
        (("run", "{classifier}", "{folder}/missing.png"), "{folder}/missing.png: no such image file"),
        (("run", "{classifier}", "{corrupt}"), "{corrupt}: not a readable image"),
        (("run", "{bare}", "{small}"), "{bare}: no vision-suite metadata"),
        (("inspect", "{folder}/missing.tflite"), "{folder}/missing.tflite: no such model file"),
        (("bench", "{corrupt}"), "{corrupt}: not a TFLite model"),
    ],
)
def test_bad_input_exits_with_status_2_and_names_the_file(kit, capsys, case, message):
    names = {**kit, "folder": kit["bare"].rsplit("/", 1)[0]}
    assert main([part.format(**names) for part in case]) == 2
    assert capsys.readouterr().err.startswith(f"error: {message.format(**names)}")


@pytest.mark.parametrize("command, option", [("run", "--top-k"), ("bench", "--threads"), ("inspect", "--json")])
def test_every_command_has_help(capsys, command, option):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0 and option in capsys.readouterr().out


def test_the_edge_kit_never_imports_tensorflow_or_keras(kit):
    code = f"""
import json, sys
from tflite.cli import main
main(["run", {kit["classifier"]!r}, {kit["wide"]!r}])
main(["inspect", {kit["classifier"]!r}])
main(["bench", {kit["classifier"]!r}, "--warmup", "0", "--runs", "1"])
heavy = {{"tensorflow", "keras", "tf_keras", "vision_core", "mediapipe"}}
heavy = sorted(heavy & {{m.split(".")[0] for m in sys.modules}})
print(json.dumps({{"heavy": heavy}}))
"""
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert last_json_line(result.stdout) == {"heavy": []}
