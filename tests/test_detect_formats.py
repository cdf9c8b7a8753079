"""``python -m apps.detect`` trains from a Pascal VOC folder and from a YOLO dataset on disk, not only
from COCO JSON: the demo records are written in each layout and one short epoch runs on each."""

import json

import numpy as np
import pytest
import yaml

from apps.detect.task import DetectTask
from vision_core.app.cli import main
from vision_core.data.detection import read_coco, write_demo_dataset

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("detect_formats")]

TINY = [
    "--input-size",
    "64",
    "--backbone",
    "resnet18",
    "--neck-channels",
    "16",
    "--head-channels",
    "16",
    "--head-depth",
    "1",
    "--batch-size",
    "4",
    "--epochs",
    "1",
]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("formats") / "demo"
    write_demo_dataset(root, train=8, val=4, size=64, image_format="png")
    return {split: read_coco(root / split / "annotations.json", split=split) for split in ("train", "val")}


def _voc(demo, root):
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    (root / "ImageSets" / "Main").mkdir(parents=True)
    for split, dataset in demo.items():
        stems = []
        for record in dataset.records:
            stem = f"{split}_{record.path.stem}"
            stems.append(stem)
            (root / "JPEGImages" / f"{stem}.png").write_bytes(record.path.read_bytes())
            objects = "".join(
                f"<object><name>{dataset.class_names[c]}</name><difficult>0</difficult><bndbox>"
                f"<xmin>{x0 + 1:.0f}</xmin><ymin>{y0 + 1:.0f}</ymin><xmax>{x1:.0f}</xmax><ymax>{y1:.0f}</ymax>"
                "</bndbox></object>"
                for (x0, y0, x1, y1), c in zip(record.boxes, record.classes)
            )
            (root / "Annotations" / f"{stem}.xml").write_text(
                f"<annotation><filename>{stem}.png</filename><size><width>64</width><height>64</height>"
                f"<depth>3</depth></size>{objects}</annotation>"
            )
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(stems) + "\n")
    return root


def _yolo(demo, root):
    for split, dataset in demo.items():
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for record in dataset.records:
            (root / "images" / split / record.path.name).write_bytes(record.path.read_bytes())
            boxes = np.asarray(record.boxes, np.float64) / 64
            lines = [
                f"{c} {(x0 + x1) / 2:.6f} {(y0 + y1) / 2:.6f} {x1 - x0:.6f} {y1 - y0:.6f}"
                for (x0, y0, x1, y1), c in zip(boxes, record.classes)
            ]
            (root / "labels" / split / f"{record.path.stem}.txt").write_text("\n".join(lines) + "\n")
    names = list(demo["train"].class_names)
    (root / "data.yaml").write_text(
        yaml.safe_dump({"path": str(root), "train": "images/train", "val": "images/val", "names": names})
    )
    return root / "data.yaml"


@pytest.mark.parametrize("layout", ["voc", "yolo"])
def test_train_runs_on_a_dataset_on_disk(demo, tmp_path, layout, capsys):
    data = _voc(demo, tmp_path / "voc") if layout == "voc" else _yolo(demo, tmp_path / "yolo")
    names = list(demo["train"].class_names)
    extra = ["--class-names", json.dumps(names)] if layout == "voc" else []
    capsys.readouterr()
    assert main(DetectTask(), ["data", "check", "--data", str(data), *extra]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["problems"] == 0
    assert report["train"]["boxes"] == demo["train"].num_boxes and report["val"]["boxes"] == demo["val"].num_boxes
    assert (
        main(
            DetectTask(),
            ["train", "--project", str(tmp_path / "runs"), "--name", layout, "--data", str(data), *extra, *TINY],
        )
        == 0
    )
    metrics = json.loads((tmp_path / "runs" / layout / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and sorted(metrics["metrics"]["per_class"]) == sorted(names)
    assert metrics["metrics"]["num_images"] == 4
