"""Classification data: readers (class folders, CSV), the up-front check, the shapes on disk, the pipeline.

Every dataset is written into ``tmp_path``; labels are int64 [N] indices into ``class_names``.
"""

import json

import cv2
import numpy as np
import pytest

from vision_core.data.classification import (
    ClassificationDataset,
    check_classification_dataset,
    check_split_overlap,
    load_classification_dataset,
    load_images,
    make_classification_dataset,
    write_shapes_dataset,
)
from vision_core.data.synthetic import SHAPE_CLASSES, classification_set, normalize


def write_image(path, value=120, size=(6, 8)):
    """A uniform image (format from the suffix) of (height, width) ``size``; ``value`` may be an RGB triple."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.empty((*size, 3), np.uint8)
    image[:] = np.broadcast_to(np.asarray(value, np.uint8), (3,))[::-1]  # RGB -> BGR for OpenCV
    assert cv2.imwrite(str(path), image)
    return path


def truncated_png(path):
    image = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    data = cv2.imencode(".png", image)[1].tobytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.fixture
def folders(tmp_path):
    """``data/{train,val}/{cat,dog}/``: train cat 2 images, dog 3; val cat 1, dog 1; plus a stray text file."""
    root = tmp_path / "data"
    for name in ("b.png", "a.jpg"):
        write_image(root / "train" / "cat" / name)
    for name in ("c.png", "a.png", "b.webp"):
        write_image(root / "train" / "dog" / name)
    write_image(root / "val" / "cat" / "x.png")
    write_image(root / "val" / "dog" / "y.png")
    (root / "train" / "dog" / "notes.txt").write_text("not an image")
    return root


def test_split_folders_give_classes_and_paths_sorted_by_folder_then_name(folders):
    dataset = load_classification_dataset(folders, "train")
    assert dataset.class_names == ("cat", "dog")
    assert [p.relative_to(folders).as_posix() for p in dataset.paths] == [
        "train/cat/a.jpg",
        "train/cat/b.png",
        "train/dog/a.png",
        "train/dog/b.webp",
        "train/dog/c.png",
    ]
    assert all(p.is_absolute() for p in dataset.paths)
    assert dataset.labels.dtype == np.int64 and dataset.labels.tolist() == [0, 0, 1, 1, 1]
    assert (len(dataset), dataset.num_classes, dataset.split) == (5, 2, "train")
    assert dataset.source == str(folders / "train")


def test_a_folder_of_class_folders_is_the_split_itself(folders):
    dataset = load_classification_dataset(folders / "val", "val")
    assert dataset.class_names == ("cat", "dog") and dataset.labels.tolist() == [0, 1]


def test_a_missing_split_folder_is_named(folders):
    with pytest.raises(FileNotFoundError, match=r"data/test: no 'test' split folder"):
        load_classification_dataset(folders, "test")


def test_given_class_names_set_the_labels_and_refuse_other_folders(folders):
    dataset = load_classification_dataset(folders, "val", class_names=["dog", "bird", "cat"])
    assert dataset.class_names == ("dog", "bird", "cat") and dataset.labels.tolist() == [2, 0]
    with pytest.raises(ValueError, match=r"val/dog: class folder 'dog' is not one of the 1 given"):
        load_classification_dataset(folders, "val", class_names=["cat"])
    with pytest.raises(ValueError, match=r"val: class folders \['cat', 'dog'\] are not among the 1 given"):
        load_classification_dataset(folders, "val", class_names=["owl"])


def test_csv_and_class_folders_give_the_same_dataset(folders):
    listed = [("cat", "a.jpg"), ("cat", "b.png"), ("dog", "a.png"), ("dog", "b.webp"), ("dog", "c.png")]
    rows = ["path,label"] + [f"train/{label}/{name},{label}" for label, name in listed]
    (folders / "train.csv").write_text("\n".join(rows) + "\n")
    from_csv = load_classification_dataset(folders / "train.csv")
    from_folders = load_classification_dataset(folders)
    assert from_csv.class_names == from_folders.class_names
    assert from_csv.paths == from_folders.paths
    np.testing.assert_array_equal(from_csv.labels, from_folders.labels)


def test_csv_split_column_keeps_the_split_and_numbers_classes_over_all_rows(tmp_path):
    (tmp_path / "labels.csv").write_text(
        "path,label,split\nimg/1.png,zebra,train\nimg/2.png,ant,val\nimg/3.png,zebra,val\n"
    )
    val = load_classification_dataset(tmp_path / "labels.csv", "val")
    assert val.class_names == ("ant", "zebra")
    assert val.paths == [tmp_path / "img" / "2.png", tmp_path / "img" / "3.png"] and val.labels.tolist() == [0, 1]
    with pytest.raises(
        ValueError,
        match=r"labels.csv: no rows of split 'test' \(its split column holds \['train', "
        r"'val'\]\)",
    ):
        load_classification_dataset(tmp_path / "labels.csv", "test")


def test_csv_path_escaping_the_root_is_refused_naming_the_line(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "labels.csv").write_text("path,label\na.png,cat\n../outside.png,cat\n")
    with pytest.raises(ValueError, match=r"labels.csv: line 3: image path '../outside.png' escapes the dataset root"):
        load_classification_dataset(tmp_path / "data" / "labels.csv")


def test_csv_label_outside_the_given_class_names_is_named_with_its_line(tmp_path):
    (tmp_path / "labels.csv").write_text("path,label\na.png,cat\nb.png,cow\n")
    with pytest.raises(
        ValueError, match=r"labels.csv: 1 label\(s\) outside the class names \['cat', 'dog'\]: line 3: 'cow'"
    ):
        load_classification_dataset(tmp_path / "labels.csv", class_names=["cat", "dog"])


def test_csv_without_a_label_column_is_named(tmp_path):
    (tmp_path / "labels.csv").write_text("path,class\na.png,cat\n")
    with pytest.raises(ValueError, match=r"labels.csv: header \['path', 'class'\] lacks the column\(s\) \['label'\]"):
        load_classification_dataset(tmp_path / "labels.csv")


def test_missing_dataset_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere: no such dataset folder"):
        load_classification_dataset(tmp_path / "nowhere")


def test_check_names_missing_and_truncated_images_and_small_classes(tmp_path):
    good = write_image(tmp_path / "good.png")
    broken = truncated_png(tmp_path / "broken.png")
    dataset = ClassificationDataset(
        source="hand-made",
        split="val",
        class_names=("a", "b", "c"),
        paths=[good, broken, tmp_path / "gone.png", good],
        labels=[0, 0, 1, 0],
    )
    report = check_classification_dataset(dataset, min_per_class=2)
    assert report.counts == {"missing_image": 1, "unreadable_image": 1, "too_few_samples": 2, "duplicate_image": 1}
    named = {(issue.kind, issue.path) for issue in report.issues}
    assert ("unreadable_image", str(broken)) in named and ("missing_image", str(tmp_path / "gone.png")) in named
    assert {("too_few_samples", "class 'b'"), ("too_few_samples", "class 'c'")} <= named
    assert not report.ok and len(report.errors) == 4 and len(report.warnings) == 1
    table = report.table()
    assert "broken.png: cannot be decoded" in table and table.endswith("FAILED: 4 error(s), 1 warning(s)")
    as_dict = json.loads(report.to_json())
    assert as_dict["images_per_class"] == {"a": 3, "b": 1, "c": 0} and as_dict["ok"] is False


def test_check_of_a_clean_split_is_ok(folders):
    report = check_classification_dataset(load_classification_dataset(folders), min_per_class=2)
    assert report.ok and report.issues == [] and report.images_per_class == {"cat": 2, "dog": 3}


def test_split_overlap_names_shared_paths_and_copies(folders):
    train = load_classification_dataset(folders, "train")
    (folders / "val" / "cat" / "copy.png").write_bytes((folders / "train" / "dog" / "c.png").read_bytes())
    write_image(folders / "val" / "cat" / "own.png", value=7)
    val = load_classification_dataset(folders, "val")
    val.paths.append(folders / "train" / "cat" / "b.png")
    val.labels = np.append(val.labels, 0)
    overlap = {issue.path: issue.message for issue in check_split_overlap(train, val)}
    # every uniform-grey test image has the same bytes: x.png and y.png repeat train images too
    assert set(overlap) == {str(folders / "val" / "cat" / name) for name in ("copy.png", "x.png")} | {
        str(folders / "val" / "dog" / "y.png"),
        str(folders / "train" / "cat" / "b.png"),
    }
    assert overlap[str(folders / "train" / "cat" / "b.png")] == f"is also train image {folders / 'train/cat/b.png'}"
    assert overlap[str(folders / "val" / "cat" / "copy.png")].startswith("has the same bytes as train image")


def test_shapes_dataset_is_written_once_and_reused(tmp_path):
    root = write_shapes_dataset(tmp_path / "shapes", train=12, val=4, size=16, progress=False)
    settings = json.loads((root / "dataset.json").read_text())
    assert settings["splits"] == {"train": {"images": 12, "seed": 11}, "val": {"images": 4, "seed": 99}}
    assert sorted(p.name for p in (root / "train").iterdir()) == sorted(SHAPE_CLASSES)
    assert sum(1 for _ in root.glob("train/*/*.png")) == 12 and sum(1 for _ in root.glob("val/*/*.png")) == 4
    stamp = (root / "dataset.json").stat().st_mtime_ns
    assert write_shapes_dataset(root, train=12, val=4, size=16, progress=False) == root
    assert (root / "dataset.json").stat().st_mtime_ns == stamp
    with pytest.raises(FileExistsError, match=r"shapes: holds a shapes dataset of other settings"):
        write_shapes_dataset(root, train=13, val=4, size=16, progress=False)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"other: exists and is not a shapes dataset"):
        write_shapes_dataset(tmp_path / "other", train=12, val=4, size=16, progress=False)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging folder left


def test_shapes_read_back_through_the_pipeline_are_exactly_the_generated_images(tmp_path):
    root = write_shapes_dataset(tmp_path / "shapes", train=6, val=20, size=16, progress=False)
    dataset = load_classification_dataset(root, "val", class_names=SHAPE_CLASSES)
    images, labels = load_images(dataset, 16)
    expected_images, expected_labels = classification_set(20, 16, seed=99)
    # the pipeline's order: class folder name, then file name (the image's index in the split)
    order = sorted(range(20), key=lambda i: (SHAPE_CLASSES[expected_labels[i]], i))
    assert images.dtype == np.float32 and images.shape == (20, 16, 16, 3)
    np.testing.assert_array_equal(labels, expected_labels[order])
    np.testing.assert_array_equal(images, normalize(expected_images[order]))


def test_pipeline_skips_an_undecodable_file(tmp_path):
    paths = [
        write_image(tmp_path / "a.png", 10),
        truncated_png(tmp_path / "b.png"),
        write_image(tmp_path / "c.png", 30),
    ]
    dataset = ClassificationDataset("hand-made", "val", ("x", "y", "z"), paths, [0, 1, 2])
    images, labels = load_images(dataset, (6, 8))
    assert labels.tolist() == [0, 2]
    np.testing.assert_array_equal(images[:, 0, 0, 0], normalize(np.array([10, 30], np.uint8)))


def test_pipeline_resizes_and_normalises_per_channel(tmp_path):
    path = write_image(tmp_path / "a.png", value=(100, 50, 200), size=(8, 12))
    dataset = ClassificationDataset("hand-made", "val", ("x",), [path], [0])
    batch = next(iter(make_classification_dataset(dataset, 4, 1, mean=(100, 0, 100), std=(1, 50, 25))))
    assert batch[0].shape == (1, 4, 4, 3) and batch[1].dtype.name == "int32"
    np.testing.assert_allclose(batch[0].numpy(), np.broadcast_to([0.0, 1.0, 4.0], (1, 4, 4, 3)), atol=1e-6)


def test_shuffle_reshuffles_every_epoch_and_augment_flips_left_right(tmp_path):
    paths = [write_image(tmp_path / f"{i:02d}.png", i) for i in range(16)]
    dataset = ClassificationDataset("hand-made", "train", [str(i) for i in range(16)], paths, list(range(16)))
    data = make_classification_dataset(dataset, (6, 8), 16, shuffle=True, seed=3)
    first, second = (next(iter(data))[1].numpy().tolist() for _ in range(2))
    assert sorted(first) == sorted(second) == list(range(16)) and first != second
    image = np.zeros((6, 8, 3), np.uint8)
    image[:, :4] = 255
    assert cv2.imwrite(str(tmp_path / "half.png"), image)
    half = ClassificationDataset("hand-made", "train", ("x",), [tmp_path / "half.png"] * 32, [0] * 32)
    left_columns = next(iter(make_classification_dataset(half, (6, 8), 32, augment=True, seed=0)))[0][:, 0, 0, 0]
    assert set(left_columns.numpy().tolist()) == {-1.0, 1.0}  # some flipped, some not
