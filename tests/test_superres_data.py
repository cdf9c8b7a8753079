"""Super-resolution data: the demo images, HR folders and DIV2K-style pairs, ``data check``'s errors, and the
patch pipeline's alignment and augmentation."""

from __future__ import annotations

import copy

import cv2
import numpy as np
import pytest

from vision_core.data.superres.demo import demo_image, write_demo_dataset
from vision_core.data.superres.folders import check_sr_folders, load_sr_dataset
from vision_core.data.superres.imresize import imresize
from vision_core.data.superres.pipeline import make_image_dataset, make_patch_dataset, to_model_pixels


def write_png(path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


def noise(height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3)).astype(np.uint8)


def test_demo_images_come_from_their_seed():
    assert np.array_equal(demo_image(48, (1, 2)), demo_image(48, (1, 2)))
    assert not np.array_equal(demo_image(48, (1, 2)), demo_image(48, (1, 3)))


def test_the_demo_dataset_is_written_once_and_reused(tmp_path):
    root = write_demo_dataset(tmp_path / "demo", train=3, val=2, size=48, progress=False)
    assert sorted(p.name for p in (root / "train").iterdir()) == ["0000.png", "0001.png", "0002.png"]
    image = cv2.cvtColor(cv2.imread(str(root / "val" / "0001.png")), cv2.COLOR_BGR2RGB)
    assert np.array_equal(image, demo_image(48, (936, 1)))
    stamp = (root / "train" / "0000.png").stat().st_mtime_ns
    assert write_demo_dataset(root, train=3, val=2, size=48, progress=False) == root
    assert (root / "train" / "0000.png").stat().st_mtime_ns == stamp
    with pytest.raises(FileExistsError, match="other settings"):
        write_demo_dataset(root, train=4, val=2, size=48, progress=False)
    with pytest.raises(ValueError, match="multiple of 12"):
        write_demo_dataset(tmp_path / "odd", size=50, progress=False)


def test_an_hr_folder_gives_mod_cropped_pairs_with_matlab_bicubic_inputs(tmp_path):
    hr = noise(31, 26, 0)
    write_png(tmp_path / "hr" / "a.png", hr)
    data = load_sr_dataset(tmp_path / "hr", 3)
    lr, cropped = data.pair(0)
    assert cropped.shape == (30, 24, 3) and np.array_equal(cropped, hr[:30, :24])
    assert np.array_equal(lr, imresize(hr[:30, :24], 1 / 3))


def test_paired_folders_follow_div2k_naming(tmp_path):
    hr, lr = noise(12, 18, 1), noise(4, 6, 2)
    write_png(tmp_path / "HR" / "0001.png", hr)
    write_png(tmp_path / "LR" / "X3" / "0001x3.png", lr)
    data = load_sr_dataset(tmp_path / "HR", 3, tmp_path / "LR")
    assert data.lr_paths == [tmp_path / "LR" / "X3" / "0001x3.png"]
    got_lr, got_hr = data.pair(0)
    assert np.array_equal(got_lr, lr) and np.array_equal(got_hr, hr)
    with pytest.raises(ValueError, match=r"no x2 input for 1 images: .*0001\.png"):
        load_sr_dataset(tmp_path / "HR", 2, tmp_path / "LR")


def test_data_check_names_every_bad_file(tmp_path):
    hr_dir, lr_dir = tmp_path / "HR", tmp_path / "LR"
    write_png(hr_dir / "good.png", noise(30, 30, 0))
    write_png(lr_dir / "goodx3.png", noise(10, 10, 1))
    (hr_dir / "broken.png").write_bytes(b"not a png")
    write_png(hr_dir / "orphan.png", noise(30, 30, 2))
    write_png(hr_dir / "mismatch.png", noise(30, 30, 3))
    write_png(lr_dir / "mismatchx3.png", noise(9, 10, 4))
    write_png(hr_dir / "small.png", noise(18, 30, 5))
    write_png(lr_dir / "smallx3.png", noise(6, 10, 6))
    report = check_sr_folders(hr_dir, 3, lr_dir, patch_size=8, split="train")
    found = sorted((issue.kind, issue.path.replace(str(tmp_path), "")) for issue in report.issues)
    assert found == [
        ("missing_input", "/HR/orphan.png"),
        ("scale_mismatch", "/HR/mismatch.png"),
        ("smaller_than_patch", "/LR/smallx3.png"),
        ("unreadable_image", "/HR/broken.png"),
    ]
    assert not report.ok and report.num_images == 5
    messages = {issue.kind: issue.message for issue in report.issues}
    assert messages["scale_mismatch"].endswith("(10x9; expected 30x27)")
    assert messages["smaller_than_patch"] == "input 10x6 is smaller than the 8x8 training patch"


def test_data_check_of_an_hr_folder_sizes_the_bicubic_input(tmp_path):
    write_png(tmp_path / "hr" / "a.png", noise(24, 40, 0))
    assert check_sr_folders(tmp_path / "hr", 4, patch_size=6).ok
    report = check_sr_folders(tmp_path / "hr", 4, patch_size=7)
    assert [(i.kind, i.message) for i in report.issues] == [
        ("smaller_than_patch", "input 10x6 is smaller than the 7x7 training patch")
    ]
    empty = check_sr_folders(tmp_path / "nothing", 4)
    assert [i.kind for i in empty.issues] == ["no_images"]


def blocky_pair(tmp_path, scale: int = 2):
    """A pair whose HR repeats each LR pixel in a scale x scale block: flips and rotations keep it so."""
    lr = noise(10, 12, 7)
    write_png(tmp_path / "HR" / "a.png", np.kron(lr, np.ones((scale, scale, 1), np.uint8)))
    write_png(tmp_path / "LR" / "a.png", lr)
    return load_sr_dataset(tmp_path / "HR", scale, tmp_path / "LR")


@pytest.mark.parametrize("colour", ["y", "rgb"])
def test_patches_stay_aligned_through_flips_and_rotations(tmp_path, colour):
    data = blocky_pair(tmp_path)
    dataset = make_patch_dataset(data, patch_size=4, batch_size=4, colour=colour, patches_per_image=16)
    channels = 1 if colour == "y" else 3
    batches = list(dataset)
    assert len(batches) == 4
    for inputs, targets in batches:
        assert inputs.shape == (4, 4, 4, channels) and targets.shape == (4, 8, 8, channels)
        assert np.allclose(targets.numpy()[:, ::2, ::2], inputs.numpy())
        assert np.allclose(targets.numpy()[:, 1::2, 1::2], inputs.numpy())


def test_validation_images_are_whole_pairs_in_model_pixels(tmp_path):
    data = blocky_pair(tmp_path)
    (inputs, targets), *rest = list(make_image_dataset(data, "y"))
    assert not rest and inputs.shape == (1, 10, 12, 1) and targets.shape == (1, 20, 24, 1)
    assert np.allclose(inputs.numpy()[0], to_model_pixels(data.pair(0)[0], "y"), atol=1e-6)


def test_an_unreadable_training_image_is_skipped_and_the_epoch_keeps_its_batches(tmp_path):
    write_png(tmp_path / "hr" / "a.png", noise(24, 24, 0))
    (tmp_path / "hr" / "b.png").write_bytes(b"\x89PNG truncated")
    data = load_sr_dataset(tmp_path / "hr", 2)
    batches = list(make_patch_dataset(data, patch_size=4, batch_size=2, patches_per_image=4))
    assert len(batches) == 4
    assert list(data.skipped) == [str(tmp_path / "hr" / "b.png")]


def test_the_busiest_of_several_patches_is_kept(tmp_path):
    lr = np.full((12, 12, 3), 128, np.uint8)
    lr[6:8, 6:8] = 255  # one bright spot in a flat image
    write_png(tmp_path / "HR" / "a.png", np.kron(lr, np.ones((2, 2, 1), np.uint8)))
    write_png(tmp_path / "LR" / "a.png", lr)
    data = load_sr_dataset(tmp_path / "HR", 2, tmp_path / "LR")
    batches = make_patch_dataset(data, patch_size=4, batch_size=8, patches_per_image=8, patch_candidates=40)
    for inputs, _targets in batches:
        assert np.all(inputs.numpy().max(axis=(1, 2, 3)) > inputs.numpy().min(axis=(1, 2, 3)))  # spot in every one


def test_y_inputs_are_8_bit_levels_as_matlab_rgb2ycbcr_gives_them():
    from vision_core.data.superres.pipeline import tf_model_pixels

    rgb = np.array([[[10, 200, 30], [255, 255, 255], [0, 0, 0]]], np.uint8)
    # Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255: 122.33, 235.0, 16.0
    expected = np.array([[[122], [235], [16]]], np.float32) / 255
    np.testing.assert_array_equal(to_model_pixels(rgb, "y"), expected)
    np.testing.assert_allclose(tf_model_pixels(rgb, "y").numpy(), expected, atol=1e-7)


def test_a_training_image_smaller_than_the_patch_is_skipped_by_name(tmp_path):
    write_png(tmp_path / "hr" / "a.png", noise(24, 24, 0))  # 12x12 input at x2
    write_png(tmp_path / "hr" / "small.png", noise(12, 16, 1))  # 8x6 input: below an 8 px patch
    data = load_sr_dataset(tmp_path / "hr", 2)
    batches = list(make_patch_dataset(data, patch_size=8, batch_size=2, patches_per_image=4))
    assert len(batches) == 4
    assert list(data.skipped) == [str(tmp_path / "hr" / "small.png")]
    assert "its 8x6 input is smaller than the 8 px training patch" in data.skipped[str(tmp_path / "hr" / "small.png")]


def test_demo_images_too_small_for_the_patch_stop_train_before_its_run_folder(tmp_path):
    from apps.superres.config import PRESETS
    from apps.superres.task import SuperResTask
    from vision_core.errors import AppError

    config = copy.deepcopy(PRESETS["espcn_x3_y"])
    config.dataset.demo_size, config.dataset.demo_dir = 48, str(tmp_path / "demo")
    with pytest.raises(AppError, match="demo images of 48 px give 16 px inputs at x3, smaller than the 24 px"):
        SuperResTask().validate(config)
    assert not (tmp_path / "demo").exists()
