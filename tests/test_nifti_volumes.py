"""NIfTI volumes: reorientation to RAS+, percentile intensity scaling, trilinear resampling, the checks that name
bad files, the class-folder and CSV layouts, the generated volume demo and the tf.data pipeline."""

from __future__ import annotations

import csv
import gzip

import nibabel
import numpy as np
import pytest

from apps.classify.task import ClassifyTask
from vision_core.app.cli import main
from vision_core.data.classification import check_classification_dataset, load_classification_dataset
from vision_core.data.classification.nifti import (
    WrongDimensionsError,
    intensity_to_uint8_range,
    parse_volume_shape,
    read_nifti,
    resample_linear,
    volume_array,
)
from vision_core.data.classification.types import NIFTI_SUFFIXES
from vision_core.data.classification.volumes import VOLUME_CLASSES, stored_image, write_volume_dataset
from vision_core.data.detection.images import UnreadableImageError


def save(values: np.ndarray, path, affine=None):
    nibabel.save(nibabel.Nifti1Image(np.asarray(values), np.eye(4) if affine is None else affine), path)
    return path


@pytest.mark.parametrize("axcodes", [("L", "P", "S"), ("P", "I", "R"), ("S", "L", "A")])
def test_any_stored_orientation_reads_as_the_ras_array(tmp_path, axcodes):
    ras = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5)  # [x, y, z], every voxel distinct
    path = tmp_path / "v.nii.gz"
    nibabel.save(stored_image(ras, 2.0, axcodes, gain=1.0), path)
    assert nibabel.aff2axcodes(nibabel.load(path).affine) == axcodes
    np.testing.assert_array_equal(volume_array(path), ras)


def test_resample_linear_reads_voxel_centres():
    line = np.array([0.0, 10.0], np.float32)
    np.testing.assert_allclose(resample_linear(line, (4,)), [0.0, 2.5, 7.5, 10.0])
    np.testing.assert_allclose(resample_linear(np.arange(4, dtype=np.float32), (2,)), [0.5, 2.5])
    cube = np.arange(8, dtype=np.float32).reshape(2, 2, 2)
    out = resample_linear(cube, (4, 1, 3))
    assert out.shape == (4, 1, 3)
    # the centre of axis 1 (one output of two inputs) averages them: 1.5 * 2 = the mean of y=0 and y=1 rows
    np.testing.assert_allclose(out[0, 0], [1.0, 1.5, 2.0])


def test_intensity_is_clipped_to_percentiles_of_nonzero_voxels():
    values = np.zeros((4, 5, 6), np.float32)
    values[1:3, 1:4, 1:5] = np.arange(1, 25, dtype=np.float32).reshape(2, 3, 4)  # 24 nonzero voxels 1..24
    scaled = intensity_to_uint8_range(values, (0, 100))
    np.testing.assert_allclose(scaled[values > 0], (values[values > 0] - 1) * 255 / 23, rtol=1e-6)
    assert (scaled[values == 0] == 0).all()  # the background clips to the low end
    low, high = np.percentile(np.arange(1, 25), (1, 99))  # 1.23, 23.77
    default = intensity_to_uint8_range(values)
    expected = (np.clip(values, low, high) - low) * 255 / (high - low)
    np.testing.assert_allclose(default, expected, rtol=1e-5, atol=1e-4)
    assert default.max() == pytest.approx(255) and default[values == 24].item() == pytest.approx(255)
    assert not intensity_to_uint8_range(np.full((2, 2, 2), 7.0)).any()  # equal percentiles: all 0


def test_read_nifti_rounds_to_uint8_slices_last(tmp_path):
    values = np.zeros((2, 2, 3), np.float32)
    values[..., 1] = 1.0
    values[..., 2] = 3.0  # nonzero voxels 1 and 3: percentiles (0, 100) map them to 0 and 255
    path = save(values, tmp_path / "v.nii")
    volume = read_nifti(path, percentiles=(0, 100))
    assert volume.dtype == np.uint8 and volume.shape == (2, 2, 3)
    np.testing.assert_array_equal(volume[0, 0], [0, 0, 255])
    resampled = read_nifti(path, volume_shape=(6, 4, 4), percentiles=(0, 100))  # (D, H, W) -> [H, W, D]
    assert resampled.shape == (4, 4, 6)
    # depth positions 0.5*i - 0.25 clipped: 0, 0.25, 0.75, 1.25, 1.75, 2 over values [0, 0, 255]
    np.testing.assert_array_equal(resampled[0, 0], [0, 0, 0, 64, 191, 255])


def test_wrong_dimensions_and_corrupt_files_name_the_file(tmp_path):
    flat = save(np.ones((8, 8), np.float32), tmp_path / "slice.nii.gz")
    with pytest.raises(WrongDimensionsError, match=r"slice\.nii\.gz: 2 dimensions \(8x8\)"):
        volume_array(flat)
    series = save(np.ones((4, 4, 4, 3), np.float32), tmp_path / "series.nii.gz")
    with pytest.raises(WrongDimensionsError, match=r"4 dimensions \(4x4x4x3\)"):
        volume_array(series)
    one_frame = save(np.ones((4, 4, 4, 1), np.float32), tmp_path / "frame.nii.gz")
    assert volume_array(one_frame).shape == (4, 4, 4)
    garbage = tmp_path / "garbage.nii.gz"
    garbage.write_bytes(gzip.compress(b"not a nifti header" * 40))
    with pytest.raises(UnreadableImageError, match="garbage.nii.gz: not a readable NIfTI file"):
        volume_array(garbage)
    whole = save(np.random.default_rng(0).normal(size=(16, 16, 16)).astype(np.float32), tmp_path / "whole.nii.gz")
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(whole.read_bytes()[:2000])
    with pytest.raises(UnreadableImageError, match="truncated.nii.gz: voxel data cannot be read"):
        volume_array(truncated)
    with pytest.raises(FileNotFoundError, match="missing.nii"):
        volume_array(tmp_path / "missing.nii")


def test_parse_volume_shape():
    assert parse_volume_shape("16,64,64") == (16, 64, 64)
    for bad in ("16,64", "16,0,64", "a,b,c"):
        with pytest.raises(ValueError, match="expected 'D,H,W'"):
            parse_volume_shape(bad)


def volume_csv(tmp_path, bad: bool = True):
    """A CSV of four good volumes per class (two classes; train and val two of each) and, with ``bad``, a 2D, a
    corrupt and a missing file in train."""
    rows = []
    for i in range(8):
        name = f"v{i}.nii.gz"
        save(np.arange(48, dtype=np.float32).reshape(4, 4, 3) * (i + 1), tmp_path / name)
        rows.append((name, "a" if i % 2 else "b", f"p{i}", "train" if i < 4 else "val"))
    if bad:
        save(np.ones((4, 4), np.float32), tmp_path / "flat.nii.gz")
        (tmp_path / "corrupt.nii.gz").write_bytes(b"\x1f\x8b corrupt")
        rows += [("flat.nii.gz", "a", "p8", "train"), ("corrupt.nii.gz", "b", "p9", "train")]
        rows.append(("missing.nii.gz", "a", "p10", "train"))
    path = tmp_path / "labels.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([("path", "label", "patient_id", "split"), *rows])
    return path


def test_check_names_every_bad_volume(tmp_path):
    dataset = load_classification_dataset(volume_csv(tmp_path), "train")
    report = check_classification_dataset(dataset)
    issues = {(issue.kind, issue.path.rsplit("/", 1)[-1]) for issue in report.issues}
    assert issues == {
        ("wrong_dimensions", "flat.nii.gz"),
        ("unreadable_image", "corrupt.nii.gz"),
        ("missing_image", "missing.nii.gz"),
    }
    assert not report.ok


def test_data_check_command_exits_non_zero_on_a_bad_volume(tmp_path, capsys):
    command = ["data", "check", "--preset", "volumes_mc3_18", "--volume-shape", "3,4,4"]
    assert main(ClassifyTask(), [*command, "--data", str(volume_csv(tmp_path))]) == 1
    assert "flat.nii.gz" in capsys.readouterr().out
    clean = tmp_path / "clean"
    clean.mkdir()
    assert main(ClassifyTask(), [*command, "--data", str(volume_csv(clean, bad=False))]) == 0


def test_class_folders_list_only_volumes_for_a_volume_dataset(tmp_path):
    for label in ("a", "b"):
        (tmp_path / "train" / label).mkdir(parents=True)
        save(np.ones((4, 4, 3), np.float32), tmp_path / "train" / label / "x.nii.gz")
        save(np.ones((4, 4, 3), np.float32), tmp_path / "train" / label / "y.nii")
        (tmp_path / "train" / label / "note.png").write_bytes(b"")
    dataset = load_classification_dataset(tmp_path, "train", suffixes=NIFTI_SUFFIXES)
    assert [p.name for p in dataset.paths] == ["x.nii.gz", "y.nii", "x.nii.gz", "y.nii"]
    assert dataset.labels.tolist() == [0, 0, 1, 1]


def test_generated_demo_writes_each_class_in_turn_and_reads_back(tmp_path):
    labels = write_volume_dataset(tmp_path / "demo", patients=6, shape=(4, 16, 16), progress=False)
    with open(labels) as f:
        rows = list(csv.DictReader(f))
    assert [row["label"] for row in rows] == list(VOLUME_CLASSES) * 2
    assert [row["patient_id"] for row in rows] == [f"p{i:04d}" for i in range(6)]
    for row in rows:
        volume = read_nifti(labels.parent / row["path"])
        assert volume.shape == (16, 16, 4) and volume.max() == 255 and (volume == 0).any()
    assert write_volume_dataset(tmp_path / "demo", patients=6, shape=(4, 16, 16), progress=False) == labels


def test_volume_pipeline_batches_normalised_volumes(tmp_path):
    from vision_core.data.classification.volume_pipeline import load_volumes

    dataset = load_classification_dataset(volume_csv(tmp_path, bad=False), "train")
    volumes, labels = load_volumes(dataset, (3, 8, 8), batch_size=4)
    assert volumes.shape == (4, 8, 8, 3) and volumes.dtype == np.float32
    assert labels.tolist() == dataset.labels.tolist()
    expected = read_nifti(dataset.paths[0], (3, 8, 8)).astype(np.float32) / 127.5 - 1
    np.testing.assert_allclose(volumes[0], expected, atol=1e-6)
