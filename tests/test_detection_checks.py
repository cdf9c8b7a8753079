"""The up-front dataset check: every kind of bad file and box, counted exactly and named.

Boxes are xyxy absolute pixels, float32 [N, 4]; every dataset is written into ``tmp_path``.
"""

import json

import cv2
import numpy as np
import pytest

from vision_core.data.detection import (
    DetectionDataset,
    DetectionRecord,
    UnreadableImageError,
    check_dataset,
    load_detection_dataset,
    read_coco,
    read_image,
    read_voc,
    read_yolo,
)


def write_image(path, height=48, width=64):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((height, width, 3), 120, np.uint8))
    return path


def truncated_jpeg(path):
    image = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    data = cv2.imencode(".jpg", image)[1].tobytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.fixture
def broken_coco(tmp_path):
    """A COCO split with a known number of problems of every kind (see EXPECTED)."""
    root = tmp_path / "data"
    for name in ("good.png", "oob.png", "degenerate.png", "unknown.png", "empty.png", "dup.png", "size.png"):
        write_image(root / name)
    (root / "garbage.png").write_bytes(b"not an image at all")
    truncated_jpeg(root / "truncated.jpg")
    write_image(tmp_path / "outside.png")
    images = [
        (1, "good.png"),
        (2, "missing.png"),
        (3, "garbage.png"),
        (4, "truncated.jpg"),
        (5, "oob.png"),
        (6, "degenerate.png"),
        (7, "unknown.png"),
        (8, "../outside.png"),
        (9, str(tmp_path / "outside.png")),
        (1, "dup.png"),
        (10, "empty.png"),
        (11, "size.png"),
    ]
    box = [2, 2, 20, 20]
    annotations = [
        (1, 1, box),
        (2, 1, box),
        (3, 1, box),
        (4, 1, box),
        (5, 1, [50, 10, 30, 20]),
        (5, 1, [-5, 0, 10, 10]),  # 2 out of bounds
        (6, 1, [10, 10, 0, 5]),
        (6, 2, [10, 10, 5, -1]),  # 2 degenerate
        (7, 99, box),
        (7, 1, box),  # 1 unknown category
        (8, 1, box),
        (9, 1, box),
        (11, 1, box),
        (1, 2, [1, 2, 3]),  # 1 malformed bbox
        (404, 1, box),
    ]  # 1 orphan
    content = {
        "images": [
            {"id": i, "file_name": name, "width": 100 if name == "size.png" else 64, "height": 48} for i, name in images
        ],
        "annotations": [
            {"id": n, "image_id": i, "category_id": c, "bbox": b, "iscrowd": 0}
            for n, (i, c, b) in enumerate(annotations)
        ]
        + [{"id": 99, "image_id": 1, "category_id": 1, "bbox": box, "iscrowd": 1}],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
    }
    (root / "annotations.json").write_text(json.dumps(content))
    return read_coco(root / "annotations.json")


EXPECTED = {
    "missing_image": (1, ["missing.png"]),
    "unreadable_image": (2, ["garbage.png", "truncated.jpg"]),
    "path_escape": (2, ["../outside.png", "outside.png"]),
    "duplicate_image_id": (1, ["dup.png"]),
    "size_mismatch": (1, ["size.png"]),
    "box_out_of_bounds": (2, ["oob.png", "oob.png"]),
    "degenerate_box": (2, ["degenerate.png", "degenerate.png"]),
    "unknown_class": (1, ["unknown.png"]),
    "malformed_annotation": (1, ["good.png"]),
    "no_boxes": (2, ["dup.png", "empty.png"]),
    "crowd_ignored": (1, ["good.png"]),
    "orphan_annotation": (1, ["annotations.json"]),
}


def test_check_counts_every_kind_of_problem_exactly(broken_coco):
    report = check_dataset(broken_coco)
    assert report.counts == {kind: count for kind, (count, _) in EXPECTED.items()}
    assert not report.ok


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_check_names_the_file_of_each_problem(broken_coco, kind):
    listed = sorted(
        i.path.rsplit("/", 1)[-1] if not i.path.startswith("..") else i.path
        for i in check_dataset(broken_coco).issues
        if i.kind == kind
    )
    assert listed == sorted(EXPECTED[kind][1])


def test_out_of_bounds_message_gives_the_box_and_the_image_size(broken_coco):
    messages = [i.message for i in check_dataset(broken_coco).issues if i.kind == "box_out_of_bounds"]
    assert messages == [
        "box 0 [50, 10, 80, 30] extends beyond the 64x48 image",
        "box 1 [-5, 0, 5, 10] extends beyond the 64x48 image",
    ]


def test_paths_escaping_the_root_never_become_records(broken_coco, tmp_path):
    assert all(r.path.is_relative_to(tmp_path / "data") for r in broken_coco.records)
    assert len(broken_coco.records) == 10


def test_a_hand_built_record_outside_the_root_is_reported_and_not_read(tmp_path):
    outside = write_image(tmp_path / "secret.png")
    dataset = DetectionDataset(("a",), [DetectionRecord(0, outside, [[1, 1, 5, 5]], [0])], "train", tmp_path / "data")
    report = check_dataset(dataset)
    assert report.counts == {"path_escape": 1} and "not read" in report.issues[0].message


def test_warnings_alone_do_not_fail_the_check(tmp_path):
    path = write_image(tmp_path / "a.png")
    report = check_dataset(DetectionDataset(("a",), [DetectionRecord(0, path)], "train", tmp_path))
    assert report.ok and report.counts == {"no_boxes": 1} and len(report.warnings) == 1


def test_class_ids_outside_the_class_list_are_reported(tmp_path):
    path = write_image(tmp_path / "a.png")
    record = DetectionRecord(0, path, [[1, 1, 5, 5], [2, 2, 9, 9]], [0, 5])
    report = check_dataset(DetectionDataset(("a", "b"), [record], "train", tmp_path))
    assert report.counts == {"unknown_class": 1} and "class id 5" in report.issues[0].message


def test_boxes_within_the_rounding_tolerance_pass(tmp_path):
    path = write_image(tmp_path / "a.png")
    record = DetectionRecord(0, path, [[-0.5, 0, 64.75, 48]], [0])
    assert check_dataset(DetectionDataset(("a",), [record], "train", tmp_path)).ok


def test_report_prints_a_table_and_serialises_to_json(broken_coco):
    report = check_dataset(broken_coco)
    table = report.table()
    assert "FAILED: 13 error(s), 4 warning(s)" in table
    assert all(kind in table for kind in EXPECTED) and "missing.png" in table
    content = json.loads(report.to_json())
    assert content["ok"] is False and content["counts"] == report.counts and content["images"] == 10
    assert {"kind", "severity", "path", "message", "count"} <= set(content["issues"][0])


def test_truncated_jpeg_is_unreadable(tmp_path):
    with pytest.raises(UnreadableImageError, match="truncated.jpg"):
        read_image(truncated_jpeg(tmp_path / "truncated.jpg"))


def test_yolo_reader_reports_bad_lines_unknown_classes_and_orphan_labels(tmp_path):
    write_image(tmp_path / "images" / "a.png")
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.2 0.2\nzero 1 2 3 4\n0 0.5 0.5\n")
    (tmp_path / "labels" / "ghost.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    dataset = read_yolo(tmp_path, class_names=["a", "b"])
    report = check_dataset(dataset)
    assert report.counts == {"unknown_class": 1, "malformed_annotation": 2, "orphan_annotation": 1}
    assert [i.message.split(":")[0] for i in report.issues if i.kind == "malformed_annotation"] == ["line 3", "line 4"]
    assert len(dataset.records[0].boxes) == 1


def test_yolo_list_entries_leaving_the_root_are_rejected(tmp_path):
    write_image(tmp_path / "outside" / "images" / "x.png")
    write_image(tmp_path / "set" / "images" / "a.png")
    (tmp_path / "set" / "train.txt").write_text("images/a.png\n../outside/images/x.png\n")
    (tmp_path / "set" / "data.yaml").write_text("train: train.txt\nnames: [a]\n")
    dataset = read_yolo(tmp_path / "set")
    assert [r.path.name for r in dataset.records] == ["a.png"]
    assert [(i.kind, i.path) for i in dataset.issues] == [("path_escape", str(tmp_path / "set" / "train.txt"))]


def test_voc_reader_reports_an_unparsable_xml_file(tmp_path):
    write_image(tmp_path / "a.jpg")
    (tmp_path / "a.xml").write_text(
        "<annotation><object><name>cat</name><bndbox><xmin>1</xmin></bndbox></object></annotation>"
    )
    (tmp_path / "b.xml").write_text("<annotation><filename>b.jpg</filename")
    report = check_dataset(read_voc(tmp_path, class_names=["cat"]))
    assert report.counts == {"malformed_annotation": 2, "no_boxes": 1}
    assert sorted(i.path.rsplit("/", 1)[-1] for i in report.errors) == ["a.xml", "b.xml"]


def test_loaded_dataset_with_problems_still_trains_around_them(broken_coco):
    from vision_core.data.detection.augment import val_transform
    from vision_core.data.detection.pipeline import PipelineStats, make_dataset

    stats = PipelineStats()
    batches = list(make_dataset(broken_coco, val_transform(32), batch_size=16, stats=stats))
    assert int(batches[0][0].shape[0]) == 7  # 10 records, 3 missing or unreadable
    assert stats.skipped_images == 3 and stats.dropped_boxes == 2  # the two degenerate boxes
    assert load_detection_dataset(broken_coco.source).format == "coco"
