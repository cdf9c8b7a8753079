"""Detection data layer: readers, format detection, demo dataset, augmentation, tf.data pipeline.

Boxes are xyxy absolute pixels, float32 [N, 4], throughout; every dataset here is written
into ``tmp_path`` with OpenCV.
"""

import json
import os

import albumentations as A
import cv2
import numpy as np
import pytest

from vision_core.data.detection import (
    DEMO_CLASSES,
    AnnotationFormatError,
    DetectionDataset,
    DetectionRecord,
    check_dataset,
    coco_results,
    detect_format,
    draw_detection_scene,
    load_detection_dataset,
    read_coco,
    read_voc,
    read_yolo,
    write_coco,
    write_demo_dataset,
)
from vision_core.data.detection.augment import (
    apply_transform,
    boxes_to_image,
    train_transform,
    val_transform,
)


def write_image(path, height, width, value=90):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((height, width, 3), value, np.uint8))
    return path


def write_json(path, content):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))
    return path


def coco_file(folder, file_name="images/a.png"):
    """A COCO file with category ids out of order, one xywh box per category, and a crowd region."""
    return write_json(
        folder / "annotations.json",
        {
            "images": [{"id": 5, "file_name": file_name, "width": 64, "height": 48}],
            "annotations": [
                {"id": 1, "image_id": 5, "category_id": 7, "bbox": [4.5, 8, 10, 20.25], "iscrowd": 0},
                {"id": 2, "image_id": 5, "category_id": 3, "bbox": [0, 0, 64, 48], "iscrowd": 0},
                {"id": 3, "image_id": 5, "category_id": 3, "bbox": [1, 1, 5, 5], "iscrowd": 1},
            ],
            "categories": [{"id": 7, "name": "truck"}, {"id": 3, "name": "car"}],
        },
    )


# --- COCO ---------------------------------------------------------------------------------


def test_coco_converts_xywh_to_xyxy_and_maps_sorted_category_ids(tmp_path):
    write_image(tmp_path / "images" / "a.png", 48, 64)
    dataset = read_coco(coco_file(tmp_path))
    assert dataset.class_names == ("car", "truck") and dataset.category_ids == (3, 7)
    record = dataset.records[0]
    assert record.image_id == 5 and record.path == tmp_path / "images" / "a.png"
    np.testing.assert_array_equal(record.boxes, np.array([[4.5, 8, 14.5, 28.25], [0, 0, 64, 48]], np.float32))
    np.testing.assert_array_equal(record.classes, [1, 0])
    assert record.boxes.dtype == np.float32 and record.classes.dtype == np.int32


def test_coco_ignores_crowd_regions_and_counts_them(tmp_path):
    write_image(tmp_path / "images" / "a.png", 48, 64)
    dataset = read_coco(coco_file(tmp_path))
    assert len(dataset.records[0].boxes) == 2
    assert [(i.kind, i.count) for i in dataset.issues] == [("crowd_ignored", 1)]


def test_coco_images_override_resolves_file_names_against_another_folder(tmp_path):
    write_image(tmp_path / "pictures" / "images" / "a.png", 48, 64)
    annotations = coco_file(tmp_path / "labels")
    dataset = load_detection_dataset(annotations, images=tmp_path / "pictures")
    assert dataset.records[0].path == tmp_path / "pictures" / "images" / "a.png"
    assert check_dataset(dataset).ok


def test_sample_reads_the_image_as_rgb_with_its_annotations(tmp_path):
    path = tmp_path / "images" / "a.png"
    path.parent.mkdir()
    cv2.imwrite(str(path), np.full((48, 64, 3), (255, 0, 0), np.uint8))  # blue in OpenCV's BGR
    sample = read_coco(coco_file(tmp_path)).sample(0)
    assert sample["image"].shape == (48, 64, 3) and sample["image"].dtype == np.uint8
    assert sample["image"][0, 0].tolist() == [0, 0, 255]
    assert sample["image_id"] == 5 and sample["path"] == str(path) and sample["boxes"].shape == (2, 4)


def test_coco_results_write_xywh_boxes_with_the_original_category_ids(tmp_path):
    write_image(tmp_path / "images" / "a.png", 48, 64)
    dataset = read_coco(coco_file(tmp_path))
    results = coco_results(dataset, [5], np.array([[4.5, 8, 14.5, 28.25]]), [1], [0.875])
    assert results == [{"image_id": 5, "category_id": 7, "bbox": [4.5, 8.0, 10.0, 20.25], "score": 0.875}]


def test_coco_writer_round_trips_boxes_classes_and_category_ids(tmp_path):
    write_image(tmp_path / "images" / "a.png", 48, 64)
    original = read_coco(coco_file(tmp_path))
    again = read_coco(write_coco(original, tmp_path / "copy.json"))
    assert again.class_names == original.class_names and again.category_ids == original.category_ids
    np.testing.assert_array_equal(again.records[0].boxes, original.records[0].boxes)
    np.testing.assert_array_equal(again.records[0].classes, original.records[0].classes)
    assert again.records[0].path == original.records[0].path


# --- YOLO ---------------------------------------------------------------------------------


def test_yolo_turns_normalised_centres_into_pixels_on_a_non_square_image(tmp_path):
    write_image(tmp_path / "images" / "train" / "a.jpg", 100, 200)
    (tmp_path / "labels" / "train").mkdir(parents=True)
    (tmp_path / "labels" / "train" / "a.txt").write_text("1 0.2 0.3 0.2 0.4\n0 0.5 0.5 1.0 1.0\n")
    (tmp_path / "data.yaml").write_text("train: images/train\nnames: {0: person, 1: dog}\n")
    dataset = read_yolo(tmp_path / "data.yaml")
    assert dataset.class_names == ("person", "dog")
    np.testing.assert_array_equal(dataset.records[0].boxes, np.array([[20, 10, 60, 50], [0, 0, 200, 100]], np.float32))
    np.testing.assert_array_equal(dataset.records[0].classes, [1, 0])
    assert (dataset.records[0].width, dataset.records[0].height) == (200, 100)


def test_yolo_folder_takes_class_names_from_classes_txt(tmp_path):
    write_image(tmp_path / "images" / "a.png", 50, 80)
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text("2 0.5 0.5 0.25 0.5\n0 0.25 0.2 0.75 0.2 0.5 0.8\n")
    (tmp_path / "classes.txt").write_text("a\nb\nc\n")
    dataset = read_yolo(tmp_path)
    assert dataset.class_names == ("a", "b", "c")
    np.testing.assert_array_equal(
        dataset.records[0].boxes, np.array([[30, 12.5, 50, 37.5], [20, 10, 60, 40]], np.float32)
    )  # box, polygon


# --- Pascal VOC ---------------------------------------------------------------------------

VOC_XML = """<annotation><filename>{name}</filename>
<size><width>64</width><height>48</height><depth>3</depth></size>
<object><name>dog</name><difficult>0</difficult>
<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>64</xmax><ymax>48</ymax></bndbox></object>
<object><name>cat</name><difficult>1</difficult>
<bndbox><xmin>11</xmin><ymin>6</ymin><xmax>30</xmax><ymax>20</ymax></bndbox></object>
</annotation>"""


def voc_folder(root):
    write_image(root / "JPEGImages" / "000001.jpg", 48, 64)
    (root / "Annotations").mkdir(parents=True)
    (root / "Annotations" / "000001.xml").write_text(VOC_XML.format(name="000001.jpg"))
    return root


def test_voc_reads_one_based_corners_as_pixel_edges_and_keeps_difficult(tmp_path):
    dataset = read_voc(voc_folder(tmp_path))
    record = dataset.records[0]
    assert dataset.class_names == ("cat", "dog") and record.path == tmp_path / "JPEGImages" / "000001.jpg"
    np.testing.assert_array_equal(record.boxes, np.array([[0, 0, 64, 48], [10, 5, 30, 20]], np.float32))
    np.testing.assert_array_equal(record.classes, [1, 0])
    np.testing.assert_array_equal(record.difficult, [False, True])
    assert check_dataset(dataset).ok


def test_voc_given_class_list_orders_ids_and_reports_other_names(tmp_path):
    dataset = read_voc(voc_folder(tmp_path), class_names=["dog"])
    np.testing.assert_array_equal(dataset.records[0].classes, [0])
    assert [i.kind for i in dataset.issues] == ["unknown_class"]
    assert "'cat'" in dataset.issues[0].message and dataset.issues[0].path.endswith("000001.xml")


# --- format detection ---------------------------------------------------------------------


def test_auto_detection_picks_the_reader_from_the_path(tmp_path):
    coco = coco_file(tmp_path / "coco")
    voc = voc_folder(tmp_path / "voc")
    yolo = tmp_path / "yolo"
    write_image(yolo / "images" / "a.png", 8, 8)
    (yolo / "labels").mkdir()
    (yolo / "data.yaml").write_text("train: images\nnames: [x]\n")
    assert detect_format(coco) == ("coco", coco)
    assert detect_format(voc)[0] == "voc"
    assert detect_format(yolo)[0] == "yolo" and detect_format(yolo / "data.yaml")[0] == "yolo"
    assert load_detection_dataset(yolo).format == "yolo" and load_detection_dataset(voc).format == "voc"


def test_auto_detection_names_the_path_when_no_format_matches(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(AnnotationFormatError, match=str(tmp_path)):
        load_detection_dataset(tmp_path)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_detection_dataset(tmp_path / "nowhere")


# --- demo dataset -------------------------------------------------------------------------


def test_demo_dataset_is_deterministic_by_seed(tmp_path):
    a = write_demo_dataset(tmp_path / "a", train=4, val=2, size=96, seed=3)
    b = write_demo_dataset(tmp_path / "b", train=4, val=2, size=96, seed=3)
    c = write_demo_dataset(tmp_path / "c", train=4, val=2, size=96, seed=4)
    assert a["train"].read_bytes() == b["train"].read_bytes()
    images = sorted((tmp_path / "a" / "train" / "images").iterdir())
    assert len(images) == 4
    for image in images:
        assert image.read_bytes() == (tmp_path / "b" / "train" / "images" / image.name).read_bytes()
    assert a["train"].read_bytes() != c["train"].read_bytes()


def test_demo_dataset_is_a_clean_coco_split_with_every_class(tmp_path):
    paths = write_demo_dataset(tmp_path / "demo", train=40, val=5, size=128)
    assert set(paths) == {"train", "val"}
    dataset = load_detection_dataset(tmp_path / "demo", split="train")
    assert dataset.class_names == DEMO_CLASSES and len(dataset) == 40
    report = check_dataset(dataset)
    assert report.ok and not report.issues
    assert set(np.concatenate([r.classes for r in dataset.records]).tolist()) == set(range(len(DEMO_CLASSES)))
    sides = np.concatenate([r.boxes[:, 2:] - r.boxes[:, :2] for r in dataset.records]).max(axis=1)
    assert sides.min() < 16 and sides.max() > 48  # small and large objects


def test_demo_shapes_are_no_smaller_than_min_size_when_nothing_covers_them():
    # A lone shape of side s spans about s on its longer side (a star's points reach 0.95 s).
    rng = np.random.default_rng(5)
    scenes = [draw_detection_scene(rng, 128, max_objects=4, min_size=0.25, min_visible=1.0) for _ in range(30)]
    sides = np.concatenate([boxes[:, 2:] - boxes[:, :2] for _, boxes, _ in scenes]).max(axis=1)
    assert len(sides) >= 30 and sides.min() >= 0.95 * 0.25 * 128 - 1


def test_demo_dataset_reuses_a_folder_with_a_matching_manifest(tmp_path):
    first = write_demo_dataset(tmp_path / "demo", train=3, val=1, size=64)
    stamp = os.stat(first["train"]).st_mtime_ns
    assert write_demo_dataset(tmp_path / "demo", train=3, val=1, size=64) == first
    assert os.stat(first["train"]).st_mtime_ns == stamp
    write_demo_dataset(tmp_path / "demo", train=2, val=1, size=64)
    assert len(list((tmp_path / "demo" / "train" / "images").iterdir())) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]  # no staging folders left behind


def test_demo_dataset_never_replaces_a_foreign_folder(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(FileExistsError, match="not a demo dataset"):
        write_demo_dataset(tmp_path / "mine", train=1, val=1, size=32)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


# --- augmentation -------------------------------------------------------------------------


def test_horizontal_flip_mirrors_a_known_box_exactly():
    flip = A.Compose([A.HorizontalFlip(p=1)], bbox_params=A.BboxParams(format="pascal_voc", label_fields=["classes"]))
    _, boxes, classes = apply_transform(flip, np.zeros((48, 64, 3), np.uint8), np.array([[10, 5, 30, 20]]), [2])
    np.testing.assert_array_equal(boxes, np.array([[34, 5, 54, 20]], np.float32))
    np.testing.assert_array_equal(classes, [2])


@pytest.mark.parametrize("mode, expected", [("stretch", [[10, 10, 30, 50]]), ("letterbox", [[10, 30, 30, 50]])])
def test_val_transform_resizes_boxes_with_the_image_and_maps_back(mode, expected):
    image = np.zeros((100, 200, 3), np.uint8)
    out, boxes, _ = apply_transform(val_transform(100, mode), image, np.array([[20, 10, 60, 50]]), [0])
    assert out.shape == (100, 100, 3)
    np.testing.assert_allclose(boxes, expected, atol=1e-4)
    np.testing.assert_allclose(boxes_to_image(boxes, (100, 200), 100, mode), [[20, 10, 60, 50]], atol=1e-4)


def test_train_transform_keeps_boxes_on_the_objects():
    image = np.zeros((120, 160, 3), np.uint8)
    image[30:70, 40:100] = 255  # a white object at x 40..100, y 30..70
    transform = train_transform((96, 128), seed=0, colour_jitter=0.0)
    kept = 0
    for _ in range(20):
        out, boxes, classes = apply_transform(transform, image, np.array([[40, 30, 100, 70]]), [1])
        assert out.shape == (96, 128, 3) and out.dtype == np.uint8
        if len(boxes):
            ys, xs = np.nonzero(out[:, :, 0] > 127)
            np.testing.assert_allclose(boxes[0], [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], atol=1.5)
            assert classes.tolist() == [1]
            kept += 1
    assert kept >= 10


# --- tf.data pipeline ---------------------------------------------------------------------


def pipeline_dataset(tmp_path, corrupt=False):
    records = []
    for index in range(5):
        path = write_image(tmp_path / f"{index}.png", 40, 60, value=40 * index)
        records.append(
            DetectionRecord(
                index, path, boxes=[[5, 5, 20, 30], [30, 10, 55, 35]][: index % 3], classes=[0, 1][: index % 3]
            )
        )
    if corrupt:
        records[2].path.write_bytes(records[2].path.read_bytes()[:100])  # truncated PNG
    return DetectionDataset(("a", "b"), records, "train", tmp_path)


def test_pipeline_yields_padded_batches_of_fixed_shapes(tmp_path):
    from vision_core.data.detection.pipeline import make_dataset

    batches = list(make_dataset(pipeline_dataset(tmp_path), val_transform(32), batch_size=2, max_boxes=3))
    assert [int(images.shape[0]) for images, _ in batches] == [2, 2, 1]
    images, targets = batches[0]
    assert images.shape == (2, 32, 32, 3) and images.dtype.name == "float32"
    assert targets["boxes"].shape == (2, 3, 4) and targets["classes"].dtype.name == "int32"
    assert float(images.numpy().min()) >= -1.0 and float(images.numpy().max()) <= 1.0
    np.testing.assert_array_equal(targets["classes"].numpy(), [[-1, -1, -1], [0, -1, -1]])
    np.testing.assert_allclose(
        targets["boxes"].numpy()[1, 0], [5 * 32 / 60, 5 * 32 / 40, 20 * 32 / 60, 30 * 32 / 40], rtol=1e-5
    )


def test_pipeline_skips_a_corrupt_image_and_counts_it(tmp_path):
    from vision_core.data.detection.pipeline import PipelineStats, make_dataset

    stats = PipelineStats()
    batches = list(make_dataset(pipeline_dataset(tmp_path, corrupt=True), val_transform(32), batch_size=8, stats=stats))
    assert int(batches[0][0].shape[0]) == 4
    assert stats.skipped_images == 1 and list(stats.skipped) == [str(tmp_path / "2.png")]


def test_pipeline_hands_augmented_samples_to_the_encoder(tmp_path):
    from vision_core.data.detection.pipeline import make_dataset

    def encoder(image, boxes, classes):
        return {"count": np.array([len(boxes)], np.int32), "side": np.array(image.shape[:2], np.int32)}

    ((batch_images, targets),) = make_dataset(
        pipeline_dataset(tmp_path), val_transform(24), 5, encoder=encoder, normalize=None
    )
    assert batch_images.dtype.name == "uint8"
    np.testing.assert_array_equal(targets["count"].numpy()[:, 0], [0, 1, 2, 0, 1])
    np.testing.assert_array_equal(targets["side"].numpy(), [[24, 24]] * 5)
