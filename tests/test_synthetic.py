import numpy as np

from vision_core.data.synthetic import (
    SHAPE_CLASSES,
    classification_set,
    draw_scene,
    normalize,
)


def test_same_seed_gives_the_same_images():
    a, la = classification_set(6, 32, seed=3)
    b, lb = classification_set(6, 32, seed=3)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
    assert a.dtype == np.uint8 and a.shape == (6, 32, 32, 3)


def test_scene_boxes_lie_inside_the_image_with_known_classes():
    image, boxes, classes = draw_scene(np.random.default_rng(0), 64, 5)
    assert image.shape == (64, 64, 3) and boxes.shape == (5, 4)
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= 64).all()
    assert (boxes[:, 2:] > boxes[:, :2]).all()
    assert set(classes.tolist()) <= set(range(len(SHAPE_CLASSES)))


def test_every_class_appears_in_a_modest_set():
    _, labels = classification_set(80, 32, seed=0)
    assert set(labels.tolist()) == set(range(len(SHAPE_CLASSES)))


def test_normalize_maps_uint8_to_minus_one_one():
    np.testing.assert_allclose(normalize(np.array([0, 255], np.uint8)), [-1.0, 1.0])
