"""Explanation maps (Grad-CAM, integrated gradients, saliency, occlusion) on models whose answers are known, the
map comparison, and the files ``explain_images`` writes."""

from __future__ import annotations

import itertools
import json
import logging

import cv2
import numpy as np
import pytest

from vision_core.backend import keras
from vision_core.classification import attribution
from vision_core.classification.explain import (
    ExplainItem,
    ExplainSettings,
    choose_targets,
    explain_images,
    normalised_value,
    panel_slices,
    probability_function,
)
from vision_core.layers.volume import SlicesToBatch, SlicesToRows

SQUARE = (slice(4, 10), slice(14, 20))  # rows, columns of the one patch that carries class 1's evidence


def linear_model(weights: np.ndarray) -> keras.Model:
    """``logits = flatten(x) @ weights``: integrated gradients and saliency have closed forms."""
    inputs = keras.Input((4, 5, 2))
    flat = keras.layers.Flatten(name="flatten")(inputs)
    dense = keras.layers.Dense(weights.shape[1], use_bias=False, name="logits")
    model = keras.Model(inputs, dense(flat))
    dense.set_weights([weights])
    return model


def patch_evidence_model() -> keras.Model:
    """24x24 grey in; class 1's logit is ``8 * mean(relu(x))``, class 0's its negative."""
    inputs = keras.Input((24, 24, 1))
    return evidence_model(inputs, lambda features: features(inputs))


def evidence_model(inputs, feature_map) -> keras.Model:
    """``pool(feature_map(relu conv 1x1 of weight 1))`` -> logits ``(-8, 8) * mean``: class 1's evidence is
    ``mean(relu(x))`` over what ``feature_map`` hands the pooling."""
    features = keras.layers.Conv2D(1, 1, activation="relu", name="features")
    dense = keras.layers.Dense(2, name="logits")
    model = keras.Model(inputs, dense(keras.layers.GlobalAveragePooling2D(name="pool")(feature_map(features))))
    features.set_weights([np.ones((1, 1, 1, 1), np.float32), np.zeros(1, np.float32)])
    dense.set_weights([np.array([[-8.0, 8.0]], np.float32), np.zeros(2, np.float32)])
    return model


def patch_image() -> np.ndarray:
    """Black (-1, normalised) with a white 6x6 square at :data:`SQUARE`: float32 [24, 24, 1]."""
    image = np.full((24, 24, 1), -1.0, np.float32)
    image[SQUARE] = 1.0
    return image


BOX = (slice(2, 6), slice(5, 9), slice(3, 5))  # rows, columns, slices of class 1's evidence in a volume


def volume_evidence_model() -> keras.Model:
    """A volume network in miniature, 12x12 pixels by 8 slices in (slices last, folded into the batch inside);
    class 1's logit is ``8 * mean(relu(v))`` over the voxels, class 0's its negative."""
    inputs = keras.Input((12, 12, 8))
    slices = SlicesToBatch(name="slices")(inputs)
    return evidence_model(inputs, lambda features: SlicesToRows(8, name="volume_rows")(features(slices)))


def box_volume() -> np.ndarray:
    """Black (-1) with a white box at :data:`BOX`: float32 [12, 12, 8]."""
    volume = np.full((12, 12, 8), -1.0, np.float32)
    volume[BOX] = 1.0
    return volume


def softmax_of(model: keras.Model):
    return probability_function(lambda images: model.predict(images, verbose=0), multi_label=False, logits=True)


def explain_with_int8_twin(model: keras.Model, items, settings: ExplainSettings, out_dir) -> dict:
    """:func:`explain_images` of ``model`` (classes healthy, lesion), compared with its twin whose probabilities
    sit on an int8 output's 1/256 grid (the compared form's name: ``int8``)."""
    probabilities = softmax_of(model)

    def rounded(images):
        return np.round(probabilities(images) * 256) / 256

    return explain_images(
        items,
        model,
        probabilities,
        ["healthy", "lesion"],
        out_dir,
        settings,
        mean=127.5,
        std=127.5,
        model_name="evidence model",
        compare=("int8", rounded),
        progress=False,
    )


def test_integrated_gradients_and_saliency_of_a_linear_model_have_their_closed_forms():
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(40, 3)).astype(np.float32)
    model = linear_model(weights)
    images = rng.normal(size=(2, 4, 5, 2)).astype(np.float32)
    w = weights.reshape(4, 5, 2, 3)
    attributions = attribution.integrated_gradients(model, images, [2, 0], baseline=-1.0, steps=3)
    np.testing.assert_allclose(attributions[0], (images[0] + 1) * w[..., 2], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(attributions[1], (images[1] + 1) * w[..., 0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(attribution.saliency(model, images, [1, 1])[0], np.abs(w[..., 1]).max(-1), rtol=1e-6)


def test_integrated_gradients_are_complete_and_the_trapezoid_rule_converges():
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(
        4, 3, activation="tanh", name="conv1", kernel_initializer=keras.initializers.GlorotNormal(1)
    )(inputs)
    x = keras.layers.Conv2D(
        4, 3, activation="tanh", name="conv2", kernel_initializer=keras.initializers.GlorotNormal(2)
    )(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(
        inputs, keras.layers.Dense(3, name="logits", kernel_initializer=keras.initializers.GlorotNormal(3))(x)
    )
    image = np.random.default_rng(1).uniform(-1, 1, (1, 16, 16, 3)).astype(np.float32)
    baseline = np.full((16, 16, 3), -1.0, np.float32)
    gap = float(model(image)[0, 1] - model(baseline[None])[0, 1])
    errors = {
        steps: abs(float(attribution.integrated_gradients(model, image, [1], baseline, steps).sum()) - gap)
        for steps in (2, 64)
    }
    assert abs(gap) > 0.05  # a difference worth attributing
    assert errors[64] < 2e-3 * abs(gap) + 1e-5
    assert errors[64] < errors[2]


def test_occlusion_puts_the_drop_on_the_only_patch_with_evidence_and_nothing_where_no_patch_touches_it():
    model = patch_evidence_model()
    image = patch_image()
    maps = attribution.occlusion(softmax_of(model), image, [1, 0], patch=6, stride=3, fill=0.0)
    assert maps.shape == (2, 24, 24)
    row, column = np.unravel_index(np.argmax(maps[0]), (24, 24))
    assert SQUARE[0].start <= row < SQUARE[0].stop and SQUARE[1].start <= column < SQUARE[1].stop
    # A pixel gets the mean over the patches covering it; patches off the square change nothing.
    starts = attribution.patch_starts(24, 6, 3)
    touched = np.zeros((24, 24), bool)
    for y in starts:
        for x in starts:
            if y < SQUARE[0].stop and y + 6 > SQUARE[0].start and x < SQUARE[1].stop and x + 6 > SQUARE[1].start:
                touched[y : y + 6, x : x + 6] = True
    np.testing.assert_allclose(maps[0][~touched], 0.0, atol=1e-6)
    assert (maps[0][touched] > 0).all()
    np.testing.assert_allclose(maps[1], -maps[0], atol=1e-6)  # two classes: what class 1 loses, class 0 gains


def test_occlusion_of_a_volume_slides_a_box_through_its_slices_and_drops_only_where_it_hides_evidence():
    model = volume_evidence_model()
    maps = attribution.occlusion(softmax_of(model), box_volume(), [1], patch=(4, 4, 2), stride=(2, 2, 1))
    assert maps.shape == (1, 12, 12, 8)
    starts = [attribution.patch_starts(12, 4, 2)] * 2 + [attribution.patch_starts(8, 2, 1)]
    touched = np.zeros((12, 12, 8), bool)
    for corner in itertools.product(*starts):
        box = tuple(slice(c, c + p) for c, p in zip(corner, (4, 4, 2)))
        if all(b.start < e.stop and b.stop > e.start for b, e in zip(box, BOX)):
            touched[box] = True
    np.testing.assert_allclose(maps[0][~touched], 0.0, atol=1e-6)
    assert (maps[0][touched] > 0).all()
    assert np.unravel_index(np.argmax(maps[0]), maps[0].shape)[2] in (3, 4)  # the evidence's slices
    # One size per axis or one number: the same square on an image.
    image_maps = attribution.occlusion(softmax_of(patch_evidence_model()), patch_image(), [1], patch=6, stride=3)
    square_maps = attribution.occlusion(softmax_of(patch_evidence_model()), patch_image(), [1], (6, 6), (3, 3))
    np.testing.assert_array_equal(image_maps, square_maps)
    with pytest.raises(ValueError, match=r"patch \(4, 4\) and stride \(2, 2, 1\): one size per leading axis"):
        attribution.occlusion(softmax_of(model), box_volume(), [1], patch=(4, 4), stride=(2, 2, 1))


def test_grad_cam_of_a_volume_network_lights_exactly_the_evidence_voxels():
    model = volume_evidence_model()
    assert attribution.volume_features_layer(model).name == "volume_rows"
    cams = attribution.grad_cam_volume(model, np.stack([box_volume()] * 2), [1, 0])
    assert cams.shape == (2, 12, 12, 8) and cams.dtype == np.float32
    box = np.zeros((12, 12, 8), bool)
    box[BOX] = True
    np.testing.assert_allclose(cams[0][box], 8.0 / (12 * 12 * 8), rtol=1e-5)  # mean gradient x relu(v) = 1
    assert (cams[0][~box] == 0).all() and (cams[1] == 0).all()
    with pytest.raises(ValueError, match="no SlicesToRows layer; not a volume network"):
        attribution.grad_cam_volume(patch_evidence_model(), patch_image()[None], [1])


def test_patch_starts_cover_the_image_and_end_at_its_edge():
    assert attribution.patch_starts(24, 6, 4) == [0, 4, 8, 12, 16, 18]
    assert attribution.patch_starts(24, 6, 3) == [0, 3, 6, 9, 12, 15, 18]
    assert attribution.patch_starts(8, 8, 2) == [0]
    with pytest.raises(ValueError, match="patch 9 must be within 1..8"):
        attribution.patch_starts(8, 9, 2)


def test_grad_cam_lights_exactly_the_evidence_of_the_class_it_explains():
    model = patch_evidence_model()
    assert attribution.last_feature_layer(model) == "features"
    cams = attribution.grad_cam(model, np.stack([patch_image()] * 2), [1, 0])
    assert cams.shape == (2, 24, 24) and cams.dtype == np.float32
    square = np.zeros((24, 24), bool)
    square[SQUARE] = True
    assert (cams[0][square] > 0).all() and (cams[0][~square] == 0).all()
    np.testing.assert_allclose(cams[0][square], 8.0 / 576, rtol=1e-5)  # mean gradient x relu(x) = 1
    assert (cams[1] == 0).all()  # class 0 has only negative evidence: ReLU leaves nothing


def test_rank_correlation_is_spearmans_rho_with_tied_ranks():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(3)
    for _ in range(5):
        first = rng.integers(0, 6, (9, 7)).astype(np.float32)  # many ties
        second = first + rng.normal(0, 2, first.shape)
        assert attribution.rank_correlation(first, second) == pytest.approx(
            stats.spearmanr(first.ravel(), second.ravel()).statistic, abs=1e-12
        )
    ramp = np.arange(20.0)
    assert attribution.rank_correlation(ramp, ramp**3) == 1.0
    assert attribution.rank_correlation(ramp, -ramp) == -1.0
    assert np.isnan(attribution.rank_correlation(ramp, np.ones(20)))


def test_top_k_overlap_counts_shared_highest_pixels():
    ramp = np.arange(100.0).reshape(10, 10)
    assert attribution.top_k_overlap(ramp, ramp, 0.1) == 1.0
    assert attribution.top_k_overlap(ramp, -ramp, 0.5) == 0.0
    shifted = ramp.copy()
    shifted.flat[95:] = 0  # five of the top ten drop out of the top of the second map
    assert attribution.top_k_overlap(ramp, shifted, 0.1) == 0.5


def test_targets_are_the_prediction_or_every_label_over_the_threshold():
    assert choose_targets(np.array([0.2, 0.7, 0.1]), multi_label=False, threshold=0.5) == [1]
    assert choose_targets(np.array([0.6, 0.2, 0.9]), multi_label=True, threshold=0.5) == [0, 2]
    assert choose_targets(np.array([0.1, 0.3, 0.2]), multi_label=True, threshold=0.5) == [1]
    np.testing.assert_allclose(normalised_value("black", 127.5, 127.5), -1.0)
    np.testing.assert_allclose(normalised_value("mean", [120.0, 110.0], [60.0, 50.0]), [0.0, 0.0])


def test_explain_images_writes_panels_raw_maps_and_the_agreement_with_a_second_form(tmp_path, caplog):
    items = [ExplainItem("a", "a.png", patch_image(), 1), ExplainItem("a", "b/a.png", -patch_image(), 0)]
    settings = ExplainSettings(steps=8, patch=6, stride=3, fill="mean", top_fraction=0.05)
    with caplog.at_level(logging.INFO):
        content = explain_with_int8_twin(patch_evidence_model(), items, settings, tmp_path)
    written = json.loads((tmp_path / "explanations.json").read_text())
    assert written["compare"]["pairs"] == 2 and written["compare"]["model"] == "int8"
    first, second = written["results"]
    assert (first["panel"], second["panel"]) == ("a.png", "a_2.png")
    assert first["label"] == "lesion" and [t["class"] for t in first["targets"]] == ["lesion"]
    target = first["targets"][0]
    assert sorted(target["maps"]) == ["gradcam", "integrated_gradients", "occlusion", "saliency"]
    maps = {method: np.load(tmp_path / file) for method, file in target["maps"].items()}
    assert all(m.shape == (24, 24) and m.dtype == np.float32 for m in maps.values())
    compared = np.load(tmp_path / target["compare"]["map"])
    assert target["compare"]["spearman"] == pytest.approx(attribution.rank_correlation(maps["occlusion"], compared))
    assert target["compare"]["spearman"] > 0.9  # rounding to 1/256 keeps the map's order nearly intact
    # The second image's class-1 probability is ~1 wherever a patch sits: on the 1/256 grid the map is constant.
    constant = {"map": "a_2_lesion_occlusion_compare.npy", "spearman": None, "top_k_overlap": None}
    assert second["targets"][0]["compare"] == constant
    assert written["compare"]["constant_maps"] == 1
    logged = [record.getMessage() for record in caplog.records]
    assert "a lesion: an occlusion map is constant: not compared with int8" in logged
    summary = written["compare"]
    assert (
        f"occlusion agreement with int8 over 2 maps (1 constant): mean Spearman {summary['spearman_mean']:.3f}, "
        f"mean top-k overlap {summary['top_k_overlap_mean']:.3f}"
    ) in logged
    assert written["compare"]["spearman_mean"] == written["compare"]["spearman_median"] == target["compare"]["spearman"]
    assert written["compare"]["top_k_overlap_mean"] == target["compare"]["top_k_overlap"]
    panel = cv2.imread(str(tmp_path / "a.png"))
    assert panel.shape == (18 + 168, 6 * 168, 3)  # image + 4 methods + int8 occlusion, 24 px drawn 7x
    assert content["results"][1]["file"] == "b/a.png"


def test_an_occlusion_only_form_refuses_gradient_methods(tmp_path):
    settings = ExplainSettings(methods=("saliency", "occlusion"))
    with pytest.raises(ValueError, match="model.tflite: gradient methods need the Keras model"):
        explain_images(
            [ExplainItem("a", "a.png", patch_image())],
            None,
            lambda images: np.full((len(images), 2), 0.5),
            ["a", "b"],
            tmp_path,
            settings,
            mean=127.5,
            std=127.5,
            model_name="model.tflite",
        )


def test_a_multi_label_model_explains_every_class_over_the_threshold_one_panel_row_each(tmp_path):
    model = patch_evidence_model()  # sigmoid of its logits: lesion 0.62, healthy 0.38 on the patch image
    probabilities = probability_function(lambda images: model.predict(images, verbose=0), True, logits=True)
    np.testing.assert_allclose(
        probabilities(patch_image()[None]), [[1 / (1 + np.e**0.5), 1 / (1 + np.e**-0.5)]], rtol=1e-5
    )
    content = explain_images(
        [ExplainItem("a", "a.png", patch_image(), [1, 1])],
        model,
        probabilities,
        ["healthy", "lesion"],
        tmp_path,
        ExplainSettings(methods=("gradcam", "occlusion"), patch=6, stride=3, threshold=0.3),
        mean=127.5,
        std=127.5,
        model_name="patch model",
        multi_label=True,
        progress=False,
    )
    (result,) = content["results"]
    assert result["label"] == ["healthy", "lesion"] and [t["class"] for t in result["targets"]] == ["healthy", "lesion"]
    assert sorted(p.name for p in tmp_path.glob("*.npy")) == [
        "a_healthy_gradcam.npy",
        "a_healthy_occlusion.npy",
        "a_lesion_gradcam.npy",
        "a_lesion_occlusion.npy",
    ]
    assert content["compare"] is None
    assert cv2.imread(str(tmp_path / "a.png")).shape == (2 * (18 + 168), 3 * 168, 3)


def test_settings_are_checked_before_any_map_is_made(tmp_path):
    with pytest.raises(ValueError, match=r"methods \['lime'\]: expected some of gradcam"):
        ExplainSettings(methods=("lime",))
    with pytest.raises(ValueError, match="stride 0: must be at least 1"):
        ExplainSettings(stride=0)
    with pytest.raises(ValueError, match=r"top_fraction 1.5: must be in \(0, 1\]"):
        ExplainSettings(top_fraction=1.5)
    with pytest.raises(ValueError, match="occlusion patch 32 is larger than a.png's 24 px side"):
        explain_images(
            [ExplainItem("a", "a.png", patch_image())],
            None,
            lambda images: np.full((len(images), 2), 0.5),
            ["a", "b"],
            tmp_path / "out",
            ExplainSettings(methods=("occlusion",), patch=32),
            mean=127.5,
            std=127.5,
            model_name="model.tflite",
        )
    assert not (tmp_path / "out").exists()


def test_a_volume_is_explained_per_voxel_with_panels_of_the_slices_its_maps_light(tmp_path):
    model = volume_evidence_model()
    settings = ExplainSettings(steps=4, patch=4, stride=2, volume=True, depth_patch=2, depth_stride=1, slices=2)
    content = explain_with_int8_twin(model, [ExplainItem("p0001", "p0001.nii.gz", box_volume(), 1)], settings, tmp_path)
    (target,) = content["results"][0]["targets"]
    assert target["class"] == "lesion" and target["panel_slices"] == [3, 4]  # the slices holding the evidence
    maps = {method: np.load(tmp_path / file) for method, file in target["maps"].items()}
    assert sorted(maps) == ["gradcam", "integrated_gradients", "occlusion", "saliency"]
    assert all(m.shape == (12, 12, 8) for m in maps.values())
    box = np.zeros((12, 12, 8), bool)
    box[BOX] = True
    assert (maps["gradcam"][box] > 0).all() and (maps["gradcam"][~box] == 0).all()
    # The score is 8 * mean(relu(v)); on the path -1 -> 1 in 4 trapezoid intervals (weights 1/8, 1/4, 1/4, 1/4,
    # 1/8) relu passes the gradient 8 / voxels at v = 0.5 and 1 only: (1 - -1) * 8 / voxels * (1/4 + 1/8).
    np.testing.assert_allclose(maps["integrated_gradients"][box], 2 * 8 / (12 * 12 * 8) * 0.375, rtol=1e-5)
    np.testing.assert_allclose(maps["integrated_gradients"][~box], 0.0, atol=1e-7)
    assert target["compare"]["spearman"] > 0.9
    assert panel_slices(maps["occlusion"], 2) == [3, 4] and panel_slices(maps["occlusion"], 20) == list(range(8))
    panel = cv2.imread(str(tmp_path / "p0001.png"))
    assert panel.shape == (2 * (18 + 168), 6 * 168, 3)  # 2 slices; slice + 4 methods + int8 occlusion, 12 px x14
    with pytest.raises(ValueError, match="occlusion depth patch 9 is larger than p0001.nii.gz's 8 slices"):
        explain_images(
            [ExplainItem("p0001", "p0001.nii.gz", box_volume())],
            None,
            softmax_of(model),
            ["healthy", "lesion"],
            tmp_path / "out",
            ExplainSettings(methods=("occlusion",), patch=4, volume=True, depth_patch=9),
            mean=127.5,
            std=127.5,
            model_name="model.tflite",
        )
