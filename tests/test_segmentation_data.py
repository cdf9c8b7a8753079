"""The segmentation data layer: mask reading, the image/mask folder reader, data check's exact findings,
the demo scenes on disk and the joint augmentation pipeline."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from PIL import Image

from vision_core.data.segmentation import (
    CITYSCAPES_CLASSES,
    DEMO_CLASSES,
    VOC_CLASSES,
    RGBMaskError,
    check_segmentation_dataset,
    load_pair,
    load_segmentation_dataset,
    make_segmentation_dataset,
    read_mask,
    segmentation_transform,
    write_segment_shapes,
)

CLASSES = ("background", "cat", "dog")


def write_image(path, height=8, width=8, value=100):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((height, width, 3), value, np.uint8))


def write_mask(path, mask):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(mask, np.uint8), mode="L").save(path)


def test_a_palette_mask_is_read_as_its_indices_not_its_colours(tmp_path):
    indices = np.array([[0, 1], [2, 255]], np.uint8)
    image = Image.fromarray(indices, mode="P")
    palette = [0, 0, 0, 128, 0, 0, 0, 128, 0] + [0, 0, 0] * 252 + [224, 224, 192]
    image.putpalette(palette)
    image.save(tmp_path / "voc.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "voc.png"), indices)
    assert read_mask(tmp_path / "voc.png").dtype == np.int32


def test_a_colour_mask_is_an_error_naming_the_file(tmp_path):
    Image.fromarray(np.zeros((4, 4, 3), np.uint8), mode="RGB").save(tmp_path / "rgb.png")
    with pytest.raises(RGBMaskError, match="rgb.png: a RGB \\(colour\\) mask; expected class indices"):
        read_mask(tmp_path / "rgb.png")


def test_the_reader_pairs_by_stem_and_records_what_does_not_pair(tmp_path):
    for stem in ("a", "b"):
        write_image(tmp_path / "train" / "images" / f"{stem}.jpg")
        write_mask(tmp_path / "train" / "masks" / f"{stem}.png", np.zeros((8, 8)))
    write_image(tmp_path / "train" / "images" / "lonely.png")
    write_mask(tmp_path / "train" / "masks" / "orphan.png", np.zeros((8, 8)))
    data = load_segmentation_dataset(tmp_path, "train", CLASSES)
    assert [p.name for p in data.image_paths] == ["a.jpg", "b.jpg"]
    assert [p.name for p in data.mask_paths] == ["a.png", "b.png"]
    assert [(i.kind, i.path.rsplit("/", 1)[1]) for i in data.issues] == [
        ("missing_mask", "lonely.png"),
        ("missing_image", "orphan.png"),
    ]


def test_class_names_come_from_classes_yaml_or_the_reader_says_where_to_put_them(tmp_path):
    write_image(tmp_path / "images" / "a.png")
    write_mask(tmp_path / "masks" / "a.png", np.zeros((8, 8)))
    with pytest.raises(ValueError, match="no class names: list them in .*classes.yaml"):
        load_segmentation_dataset(tmp_path, "val")
    (tmp_path / "classes.yaml").write_text("names: [sky, road]\ncolors: [[0, 0, 255], [128, 64, 128]]\n")
    data = load_segmentation_dataset(tmp_path, "val")  # no split folders: the folder is every split
    assert data.class_names == ("sky", "road") and data.colors == ((0, 0, 255), (128, 64, 128))
    with pytest.raises(FileNotFoundError, match="expected val/images and val/masks"):
        load_segmentation_dataset(tmp_path / "images", "val", CLASSES)


def test_data_check_names_every_bad_pair_with_exact_counts(tmp_path):
    root = tmp_path / "data"
    images, masks = root / "train" / "images", root / "train" / "masks"
    write_image(images / "good.png")
    write_mask(masks / "good.png", [[0] * 8] * 4 + [[1] * 8] * 2 + [[255] * 8] * 2)
    write_image(images / "corrupt.png")
    (images / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    write_mask(masks / "corrupt.png", np.zeros((8, 8)))
    write_image(images / "badmask.png")
    (masks / "badmask.png").write_bytes(b"garbage")
    write_image(images / "colour.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8), mode="RGB").save(masks / "colour.png")
    write_image(images / "small.png", height=6)
    write_mask(masks / "small.png", np.zeros((8, 8)))
    write_image(images / "labels.png")
    write_mask(masks / "labels.png", [[0, 2, 3, 7, 255, 0, 0, 0]] * 8)
    write_image(images / "nomask.png")
    write_mask(masks / "noimage.png", np.zeros((8, 8)))
    outside = tmp_path / "outside.png"
    write_image(outside)
    (images / "escape.png").symlink_to(outside)
    write_mask(masks / "escape.png", np.zeros((8, 8)))

    report = check_segmentation_dataset(load_segmentation_dataset(root, "train", CLASSES))
    assert not report.ok
    assert report.counts == {
        "missing_mask": 1,
        "missing_image": 1,
        "unreadable_image": 1,
        "unreadable_mask": 1,
        "rgb_mask": 1,
        "size_mismatch": 1,
        "unknown_label": 1,
        "path_escape": 1,
    }
    found = {(issue.kind, issue.path.rsplit("/", 1)[1]): issue.message for issue in report.issues}
    assert found[("size_mismatch", "small.png")] == "mask is 8x8, image small.png is 8x6"
    assert found[("unknown_label", "labels.png")] == (
        "values [3, 7] are outside the classes 0..2 and not the ignore index 255"
    )
    assert (
        found[("rgb_mask", "colour.png")] == "a RGB (colour) mask; expected class indices (8-bit grey or palette PNG)"
    )
    assert ("path_escape", "escape.png") in found and ("missing_mask", "nomask.png") in found
    assert report.num_images == 6  # the pairs that paired: not nomask, noimage, escape
    # good: 32 background, 16 cat, 16 ignored; labels: 8 rows of 4 background, 1 dog, 1 ignored; corrupt, small: 64
    assert report.pixels_per_class == {"background": 32 + 32 + 64 + 64, "cat": 16, "dog": 8}
    assert report.ignored_pixels == 16 + 8
    assert "FAILED: 8 error(s), 0 warning(s)" in report.table()


def test_the_demo_is_deterministic_and_its_masks_hold_the_shape_classes(tmp_path):
    first = write_segment_shapes(tmp_path / "a", train=6, val=3, size=64, progress=False)
    second = write_segment_shapes(tmp_path / "b", train=6, val=3, size=64, progress=False)
    for split, count in (("train", 6), ("val", 3)):
        names = sorted(p.name for p in (first / split / "masks").iterdir())
        assert names == [f"{i:05d}.png" for i in range(count)]
        for name in names:
            assert (first / split / "images" / name).read_bytes() == (second / split / "images" / name).read_bytes()
            assert (first / split / "masks" / name).read_bytes() == (second / split / "masks" / name).read_bytes()
    data = load_segmentation_dataset(first, "train")
    assert data.class_names == DEMO_CLASSES == ("background", "circle", "square", "triangle", "cross")
    report = check_segmentation_dataset(data)
    assert report.ok and all(count > 0 for count in report.pixels_per_class.values())
    assert json.loads((first / "dataset.json").read_text())["splits"]["val"] == {"images": 3, "seed": 97}
    assert write_segment_shapes(first, train=6, val=3, size=64, progress=False) == first  # reused
    with pytest.raises(FileExistsError, match="holds a segmentation demo of other settings"):
        write_segment_shapes(first, train=7, val=3, size=64, progress=False)


def test_augmentation_moves_image_and_mask_together_and_fills_masks_with_the_ignore_index():
    image = np.zeros((64, 64, 3), np.uint8)
    image[16:48, 16:48] = 255
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 16:48] = 2
    transform = segmentation_transform(32, augment=True, ignore_index=255, seed=3)
    padded = 0
    for _ in range(20):
        out = transform(image=image, mask=mask)
        values = set(np.unique(out["mask"]).tolist())
        assert values <= {0, 2, 255}  # nearest: no blended label values
        padded += 255 in values
        inside = out["mask"] == 2
        assert out["image"][inside].mean() > 150 and (out["image"][out["mask"] == 0].mean() < 100)
    assert padded > 0


def test_the_pipeline_batches_normalised_images_and_int32_masks(tmp_path):
    root = write_segment_shapes(tmp_path / "demo", train=5, val=2, size=64, progress=False)
    data = load_segmentation_dataset(root, "train")
    batches = list(make_segmentation_dataset(data, 32, 4))
    assert [tuple(images.shape) for images, _ in batches] == [(4, 32, 32, 3), (1, 32, 32, 3)]
    images, masks = batches[0]
    assert masks.dtype.name == "int32" and tuple(masks.shape) == (4, 32, 32)
    assert -1.0 <= float(np.min(images)) and float(np.max(images)) <= 1.0
    expected = cv2.resize(read_mask(data.mask_paths[0]).astype(np.uint8), (32, 32), interpolation=cv2.INTER_NEAREST)
    np.testing.assert_array_equal(masks[0].numpy(), expected)


def write_palette_mask(path, indices):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(np.asarray(indices, np.uint8), mode="P")
    image.putpalette([0, 0, 0, 128, 0, 0] + [0, 0, 0] * 253 + [224, 224, 192])
    image.save(path)


def test_a_voc_folder_is_read_from_its_split_list_with_borders_ignored(tmp_path):
    root = tmp_path / "VOC2012"
    for stem in ("2007_000032", "2007_000039"):
        write_image(root / "JPEGImages" / f"{stem}.jpg")
        write_palette_mask(root / "SegmentationClass" / f"{stem}.png", [[0] * 8] * 6 + [[1] * 7 + [255]] * 2)
    write_image(root / "JPEGImages" / "2007_000040.jpg")
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("2007_000032\n2007_000039\n2007_000040\n../../x\n")
    data = load_segmentation_dataset(root, "val")
    assert data.class_names == VOC_CLASSES and len(VOC_CLASSES) == 21
    assert [p.name for p in data.image_paths] == ["2007_000032.jpg", "2007_000039.jpg"]
    assert [i.kind for i in data.issues] == ["missing_mask", "path_escape"]
    assert data.issues[0].path == str(root / "SegmentationClass" / "2007_000040.png")
    assert data.issues[1].path == f"{root / 'ImageSets' / 'Segmentation' / 'val.txt'}: ../../x"
    report = check_segmentation_dataset(data)
    assert report.pixels_per_class["aeroplane"] == 2 * 14 and report.ignored_pixels == 2 * 2
    with pytest.raises(FileNotFoundError, match="no 'train' list \\(lists there: val\\)"):
        load_segmentation_dataset(root, "train")


def test_cityscapes_label_ids_map_to_the_19_train_ids_and_the_rest_is_ignored(tmp_path):
    root = tmp_path / "cityscapes"
    image = root / "leftImg8bit" / "val" / "lindau" / "lindau_000000_000019_leftImg8bit.png"
    write_image(image, height=2, width=4)
    mask = root / "gtFine" / "val" / "lindau" / "lindau_000000_000019_gtFine_labelIds.png"
    write_mask(mask, [[7, 8, 26, 33], [0, 4, 23, 40]])  # road sidewalk car bicycle / unlabeled ground sky 40
    write_image(root / "leftImg8bit" / "val" / "lindau" / "lindau_000001_000019_leftImg8bit.png")
    data = load_segmentation_dataset(root, "val")
    assert data.class_names == CITYSCAPES_CLASSES and len(CITYSCAPES_CLASSES) == 19
    assert data.colors[0] == (128, 64, 128)
    _, mapped = load_pair(str(image), str(mask), data.label_map)
    np.testing.assert_array_equal(mapped, [[0, 1, 13, 18], [255, 255, 10, 40]])
    report = check_segmentation_dataset(data)
    assert report.counts == {"missing_mask": 1, "unknown_label": 1}  # the second image, and id 40
    assert report.ignored_pixels == 2 and report.pixels_per_class["sky"] == 1
