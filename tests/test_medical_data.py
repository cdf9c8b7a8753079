"""Medical classification data: multi-label and patient CSVs, the patient split, DICOM files, the checks,
the fundus demo, mixup and the classification loss. Every file is generated into ``tmp_path``."""

import math

import cv2
import numpy as np
import pytest
from dicom_files import write_dicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from vision_core.data.classification import (
    ClassificationDataset,
    check_classification_dataset,
    check_patient_overlap,
    load_classification_dataset,
    load_images,
)
from vision_core.data.classification.dicom import read_dicom, window_to_uint8
from vision_core.data.classification.fundus import FUNDUS_CLASSES, grade_label, write_fundus_dataset
from vision_core.data.classification.readers import split_patients


def write_png(path, value=100, size=(4, 4)):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((*size, 3), value, np.uint8))
    return path


def write_csv(path, rows):
    path.write_text("\n".join(rows) + "\n")
    return path


# CSV readers ------------------------------------------------------------------------------------------------------
def test_multi_label_csv_gives_multi_hot_rows_and_an_empty_labels_cell_is_no_finding(tmp_path):
    for name in "abc":
        write_png(tmp_path / f"{name}.png")
    csv = write_csv(tmp_path / "labels.csv", ["path,labels", "a.png,nodule|effusion", "b.png,", "c.png,effusion"])
    dataset = load_classification_dataset(csv)
    assert dataset.class_names == ("effusion", "nodule") and dataset.multi_label
    assert dataset.labels.tolist() == [[1, 1], [0, 0], [1, 0]]
    assert dataset.counts() == {"effusion": 2, "nodule": 1}


def test_patient_column_without_split_column_splits_by_patient(tmp_path):
    rows = ["path,label,patient_id"]
    for patient in range(10):
        for eye in ("l", "r"):
            name = f"p{patient}{eye}.png"
            write_png(tmp_path / name)
            rows.append(f"{name},{'sick' if patient % 3 == 0 else 'well'},P{patient}")
    csv = write_csv(tmp_path / "labels.csv", rows)
    train = load_classification_dataset(csv, "train", val_fraction=0.3, split_seed=4)
    val = load_classification_dataset(csv, "val", val_fraction=0.3, split_seed=4)
    assert len(set(val.patient_ids)) == 3 and len(train) + len(val) == 20
    assert not set(train.patient_ids) & set(val.patient_ids)
    assert set(val.patient_ids) == split_patients([f"P{p}" for p in range(10)], 0.3, 4)
    assert check_patient_overlap(train, val) == []
    report = check_classification_dataset(val)
    assert report.to_dict()["patients"] == 3 and "6 images of 3 patients" in report.table()
    reversed_csv = write_csv(tmp_path / "reversed.csv", [rows[0], *rows[:0:-1]])
    assert set(load_classification_dataset(reversed_csv, "val", val_fraction=0.3, split_seed=4).patient_ids) == set(
        val.patient_ids
    )


def test_split_patients_is_seeded_and_keeps_both_splits_non_empty():
    ids = ["a", "b", "c"]
    assert split_patients(ids, 0.5, 1) == split_patients(list(reversed(ids)), 0.5, 1)
    assert len(split_patients(ids, 0.01, 0)) == 1 and len(split_patients(ids, 0.99, 0)) == 2
    with pytest.raises(ValueError, match="at least 2"):
        split_patients(["a", "a"], 0.5, 0)


def test_every_label_outside_the_class_names_is_named_with_its_line(tmp_path):
    csv = write_csv(tmp_path / "labels.csv", ["path,label", "a.png,cat", "b.png,fox", "c.png,dog", "d.png,owl"])
    with pytest.raises(
        ValueError, match=r"2 label\(s\) outside the class names \['cat', 'dog'\]: line 3: 'fox'; line 5: 'owl'"
    ):
        load_classification_dataset(csv, class_names=["cat", "dog"])


def test_a_patient_in_two_splits_is_an_error_of_data_check(tmp_path):
    for name in "abcd":
        write_png(tmp_path / f"{name}.png")
    csv = write_csv(
        tmp_path / "labels.csv",
        ["path,label,patient_id,split", "a.png,x,P1,train", "b.png,x,P2,train", "c.png,x,P1,val", "d.png,x,P3,val"],
    )
    train, val = (load_classification_dataset(csv, split) for split in ("train", "val"))
    issues = check_patient_overlap(train, val)
    assert [(i.kind, i.path, i.severity) for i in issues] == [("patient_in_two_splits", "patient 'P1'", "error")]
    assert issues[0].message.startswith("1 image(s) in train") and "1 in val" in issues[0].message


# DICOM ------------------------------------------------------------------------------------------------------------
def test_window_follows_the_dicom_linear_function():
    # c 40, w 400: 0 at or below -160, 255 above 239.5, between ((x - 39.5) / 399 + 0.5) * 255
    values = np.array([-160.0, -159.0, 39.5, 239.0, 239.5, 240.0])
    expected = [0, round((-198.5 / 399 + 0.5) * 255), round(0.5 * 255), round((199.5 / 399 + 0.5) * 255), 255, 255]
    assert window_to_uint8(values, 40, 400).tolist() == expected


def test_dicom_rescale_and_the_files_window_or_a_given_one(tmp_path):
    stored = np.array([[0, 1000], [1064, 4095]], np.uint16)  # 12-bit CT: HU = stored - 1024
    path = write_dicom(
        tmp_path / "ct.dcm",
        stored,
        bits_stored=12,
        RescaleSlope=1,
        RescaleIntercept=-1024,
        WindowCenter=40,
        WindowWidth=400,
    )
    # HU -1024 -> 0; -24 -> ((-24 - 39.5) / 399 + 0.5) * 255 = 86.9 -> 87; 40 -> 128; 3071 -> 255
    assert read_dicom(path)[..., 0].tolist() == [[0, 87], [128, 255]]
    # a given window (976, 2000): -24 is its lower edge -> 0; 40 -> ((40 - 975.5) / 1999 + 0.5) * 255 = 8.16 -> 8
    assert read_dicom(path, window=(976, 2000))[..., 0].tolist() == [[0, 0], [8, 255]]
    assert read_dicom(path).shape == (2, 2, 1) and read_dicom(path).dtype == np.uint8


def test_dicom_rescale_slope_scales_the_stored_values(tmp_path):
    path = write_dicom(
        tmp_path / "slope.dcm",
        np.array([[10, 20]], np.uint16),
        RescaleSlope=2,
        RescaleIntercept=5,
        WindowCenter=35.5,
        WindowWidth=11,
    )
    # 25 and 45 around c 35.5, w 11: 25 <= 35 - 5 = 30 -> 0; 45 > 40 -> 255
    assert read_dicom(path)[..., 0].tolist() == [[0, 255]]


def test_dicom_voi_lut_sequence_maps_values_through_the_table(tmp_path):
    item = Dataset()
    item.LUTDescriptor = [4, 0, 8]  # 4 entries, first input 0, 8-bit output
    item.add_new("LUTData", "US", [0, 50, 100, 255])  # US, not the OW its dictionary gives, to write a list
    path = write_dicom(tmp_path / "lut.dcm", np.array([[0, 1], [2, 3]], np.uint16), VOILUTSequence=Sequence([item]))
    assert read_dicom(path)[..., 0].tolist() == [[0, 50], [100, 255]]


def test_dicom_without_a_window_spans_its_range_and_monochrome1_is_inverted(tmp_path):
    signed = np.array([[-100, -50], [50, 100]], np.int16)  # 16-bit signed
    plain = write_dicom(tmp_path / "m2.dcm", signed)
    inverted = write_dicom(tmp_path / "m1.dcm", signed, PhotometricInterpretation="MONOCHROME1")
    # min-max: (x + 100) * 255 / 200 -> 0, 63.75, 191.25, 255
    assert read_dicom(plain)[..., 0].tolist() == [[0, 64], [191, 255]]
    assert read_dicom(inverted)[..., 0].tolist() == [[255, 191], [64, 0]]


def test_dicom_8_bit_multi_frame_gives_the_middle_frame_and_colour_stays_rgb(tmp_path):
    frames = np.stack([np.full((2, 4), value, np.uint8) for value in (10, 20, 30)])
    frames[1, 0, 0] = 120
    path = write_dicom(tmp_path / "cine.dcm", frames)
    assert read_dicom(path)[..., 0].tolist() == [[255, 0, 0, 0], [0, 0, 0, 0]]  # frame 1, spanning 20..120
    assert read_dicom(path, frame=2)[..., 0].tolist() == [[0, 0, 0, 0], [0, 0, 0, 0]]  # one value: no range
    colour = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    assert read_dicom(write_dicom(tmp_path / "rgb.dcm", colour)).tolist() == colour.tolist()


def test_unreadable_dicom_files_are_named_with_the_problem(tmp_path):
    empty = write_dicom(tmp_path / "header_only.dcm", None)
    with pytest.raises(OSError, match="header_only.dcm: DICOM without pixel data"):
        read_dicom(empty)
    (tmp_path / "junk.dcm").write_bytes(b"not a dicom file at all")
    with pytest.raises(OSError, match="junk.dcm: not a readable DICOM file"):
        read_dicom(tmp_path / "junk.dcm")
    with pytest.raises(FileNotFoundError, match="gone.dcm"):
        read_dicom(tmp_path / "gone.dcm")


def test_check_names_every_missing_or_unreadable_file_and_small_classes(tmp_path):
    good = write_dicom(tmp_path / "good.dcm", np.full((4, 4), 7, np.uint16))
    empty = write_dicom(tmp_path / "empty.dcm", None)
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(good.read_bytes()[:-10])
    dataset = ClassificationDataset(
        "mem", "train", ("normal", "pneumonia"), [good, empty, truncated, tmp_path / "missing.png"], [0, 0, 0, 1]
    )
    report = check_classification_dataset(dataset, min_per_class=2)
    found = {(issue.kind, issue.path) for issue in report.issues}
    assert found == {
        ("unreadable_image", str(empty)),
        ("unreadable_image", str(truncated)),
        ("missing_image", str(tmp_path / "missing.png")),
        ("too_few_samples", "class 'pneumonia'"),
    }
    assert "DICOM without pixel data" in next(i.message for i in report.issues if i.path == str(empty))
    assert not report.ok


def test_dicom_folders_train_as_one_channel_or_repeated_to_three(tmp_path):
    for label, value in (("normal", 1000), ("pneumonia", 3000)):
        write_dicom(tmp_path / "train" / label / "a.dcm", np.array([[0, value], [value, 4000]], np.uint16))
    dataset = load_classification_dataset(tmp_path, "train")
    assert [p.name for p in dataset.paths] == ["a.dcm", "a.dcm"] and dataset.labels.tolist() == [0, 1]
    grey, labels = load_images(dataset, 2, channels=1, mean=0.0, std=1.0)
    assert grey.shape == (2, 2, 2, 1) and labels.tolist() == [0, 1]
    assert grey[0, ..., 0].tolist() == [[0, 64], [64, 255]]  # 1000 / 4000 * 255 = 63.75
    rgb, _ = load_images(dataset, 2, channels=3, mean=0.0, std=1.0)
    assert (rgb == grey.repeat(3, axis=-1)).all()
    windowed, _ = load_images(dataset, 2, channels=1, mean=0.0, std=1.0, window=(2000.5, 2))
    assert windowed[1, ..., 0].tolist() == [[0, 255], [255, 255]]


# the fundus demo --------------------------------------------------------------------------------------------------
def test_fundus_demo_is_deterministic_split_by_patient_and_labelled_by_grade(tmp_path):
    first = write_fundus_dataset(tmp_path / "a", patients=6, size=32, seed=3, progress=False)
    second = write_fundus_dataset(tmp_path / "b", patients=6, size=32, seed=3, progress=False)
    assert first.read_text() == second.read_text()
    images = sorted((tmp_path / "a" / "images").iterdir())
    assert len(images) == 12 and all(
        image.read_bytes() == (tmp_path / "b" / "images" / image.name).read_bytes() for image in images
    )
    rows = [line.split(",") for line in first.read_text().splitlines()[1:]]
    assert all(label == grade_label(int(grade)) for _, label, _, _, grade in rows)
    assert {label for _, label, *_ in rows} <= set(FUNDUS_CLASSES)
    assert write_fundus_dataset(tmp_path / "a", patients=6, size=32, seed=3, progress=False) == first
    with pytest.raises(FileExistsError, match="other settings"):
        write_fundus_dataset(tmp_path / "a", patients=7, size=32, seed=3, progress=False)
    train = load_classification_dataset(first, "train", FUNDUS_CLASSES)
    val = load_classification_dataset(first, "val", FUNDUS_CLASSES)
    assert len(train) + len(val) == 12 and not set(train.patient_ids) & set(val.patient_ids)


def test_referable_fundus_images_show_lesions_and_grade_0_none(tmp_path):
    from vision_core.data.classification.fundus import draw_fundus

    tint = np.array([200.0, 90.0, 40.0])
    healthy = draw_fundus(np.random.default_rng(0), 64, 0, True, tint).astype(int)
    severe = draw_fundus(np.random.default_rng(0), 64, 3, True, tint).astype(int)

    # exudates are yellow: red and green both high, which a healthy retina (green <= 110) never is outside the disc
    def yellow(image):
        return int(((image[..., 0] > 180) & (image[..., 1] > 150) & (image[..., 2] < 140)).sum())

    assert yellow(severe) > yellow(healthy)
    assert healthy.shape == (64, 64, 3)


# mixup and the loss -----------------------------------------------------------------------------------------------
def test_mixup_mixes_each_batch_with_its_reverse_by_one_weight():
    from vision_core.backend import tf
    from vision_core.data.classification.mixup import mixup_batches

    images = np.arange(3, dtype=np.float32).reshape(3, 1, 1, 1) * np.ones((3, 2, 2, 1), np.float32)
    data = tf.data.Dataset.from_tensors((images, np.array([0, 1, 2], np.int32)))
    tf.random.set_seed(1)
    mixed_images, targets = next(iter(mixup_batches(data, 0.4, 3)))
    weight = float(targets[0, 0])
    assert np.allclose(targets.numpy().sum(axis=1), 1.0)
    assert np.allclose(targets.numpy(), weight * np.eye(3) + (1 - weight) * np.eye(3)[::-1], atol=1e-6)
    assert np.allclose(mixed_images.numpy(), weight * images + (1 - weight) * images[::-1], atol=1e-6)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, -math.log(0.75)),  # logits [0, ln 3] -> p = [1/4, 3/4], label 1
        ({"focal_gamma": 2.0}, -math.log(0.75) * 0.25**2),
        ({"label_smoothing": 0.2}, -(0.1 * math.log(0.25) + 0.9 * math.log(0.75))),
        ({"class_weights": [1.0, 2.0]}, -2 * math.log(0.75)),
    ],
)
def test_softmax_classification_loss(options, expected):
    from vision_core.classification.losses import ClassificationLoss

    loss = ClassificationLoss("softmax", **options)
    value = float(loss(np.array([1]), np.array([[0.0, math.log(3.0)]], np.float32)))
    assert value == pytest.approx(expected, rel=1e-6)


def test_sigmoid_loss_is_binary_cross_entropy_averaged_over_classes_with_positive_weights():
    from vision_core.classification.losses import ClassificationLoss, balanced_class_weights

    logits, targets = np.zeros((1, 2), np.float32), np.array([[1.0, 0.0]], np.float32)
    assert float(ClassificationLoss("sigmoid")(targets, logits)) == pytest.approx(math.log(2), rel=1e-6)
    weighted = ClassificationLoss("sigmoid", class_weights=[3.0, 1.0])(targets, logits)
    assert float(weighted) == pytest.approx(2 * math.log(2), rel=1e-6)  # (3 ln 2 + ln 2) / 2
    assert balanced_class_weights(np.array([0, 0, 0, 1]), 2) == [4 / 6, 2.0]
    assert balanced_class_weights(np.array([[1, 0], [1, 1]]), 2) == [0.5, 1.0]
