"""Explain a classifier's decisions on images: maps of every method, overlays, and how the int8 model agrees.

``explain_images(items, model, probabilities, class_names, out_dir, settings, ...)`` runs the methods of
:mod:`vision_core.classification.attribution` on each :class:`ExplainItem` (a normalised model input)
for its target classes: the predicted class (softmax), every class at or above ``settings.threshold``
else the most probable one (multi-label), or the classes asked for. Into ``out_dir`` go, per image
(``<stem>``, numbered ``<stem>_2`` when two share a stem):

* ``<stem>.png`` — a panel: one row per target class, the image and then one overlay per method (the
  map's positive part scaled to its maximum, JET colours blended over the image);
* ``<stem>_<class>_<method>.npy`` — each raw map, float32 ``[H, W]`` at the input's resolution
  (integrated gradients: the channel sum of the attributions, signed);

A volume (``settings.volume``: the item is a volume ResNet's input ``[H, W, D]``, slices last) gets maps
``[H, W, D]``, a value per voxel, and occlusion slides a ``patch x patch x depth_patch`` box; its panel
shows, per target class, the ``settings.slices`` slices where the explained model's occlusion map (else the
first map) holds the most positive mass, in slice order: a row per slice, the slice (captioned ``k/D class
probability``) and then each method's overlay on it, every map scaled to its maximum over the whole volume so
slices compare;

and ``explanations.json``::

    {"model", "class_names", "methods", "settings", "compare": null | {"model", "spearman_mean",
     "spearman_median", "top_k_overlap_mean", "top_fraction", "pairs", "constant_maps"},
     "results": [{"file", "panel", "label", "probabilities": {class: p},
                  "targets": [{"class", "index", "probability", "maps": {method: npy file},
                               "compare": {"map", "spearman", "top_k_overlap"},
                               "panel_slices": [slice index along D, ...] (volumes)}]}]}

(``spearman`` and ``top_k_overlap`` are null when a map is constant: nothing to rank; the means leave those
pairs out and ``constant_maps`` counts them. An int8 file's probabilities move in steps of 1/256, so on an
image the model is sure of (p within 1/512 of 0 or 1 under every patch) its occlusion map is constant.)

With ``compare`` (a name and the ``probabilities`` of a second form of the same model, e.g. the int8
TFLite file beside the float Keras model), occlusion also runs on it for the same targets: its map is
saved (``<stem>_<class>_occlusion_compare.npy``) and drawn as the last column, and the two maps'
Spearman rank correlation and top-k overlap are reported per image and as means.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from vision_core.classification import attribution
from vision_core.logs import get_logger
from vision_core.storage.atomic import write_atomic

log = get_logger()

RESULTS_FILE = "explanations.json"
TILE = 160  # overlays are drawn at least this many pixels wide
CAPTION = 18


@dataclasses.dataclass(frozen=True)
class ExplainItem:
    """One image to explain: its name in the outputs, where it came from, the model input float32 ``[H, W, C]``
    (normalised), and its label (class index, multi-hot row, or None when unknown)."""

    name: str
    source: str
    image: np.ndarray
    label: Any = None


@dataclasses.dataclass(frozen=True)
class ExplainSettings:
    """How the maps are made (see :mod:`vision_core.classification.attribution`).

    ``baseline``: integrated gradients' start, ``fill``: the occluding patch, each ``black`` (pixel 0) or
    ``mean`` (the normalisation's mean pixel, 0 after normalisation); ``patch`` / ``stride``: occlusion
    in pixels; ``steps``: integrated gradients' intervals; ``layer``: Grad-CAM's layer (None: the last
    feature map); ``threshold``: multi-label targets; ``top_fraction``: top-k overlap's share of pixels.
    ``volume``: the items are volumes ``[H, W, D]``; ``depth_patch`` / ``depth_stride``: occlusion's box
    across slices; ``slices``: slices drawn per target in a volume's panel.
    """

    methods: tuple[str, ...] = attribution.METHODS
    steps: int = 32
    baseline: str = "black"
    fill: str = "mean"
    patch: int = 16
    stride: int = 8
    layer: str | None = None
    threshold: float = 0.5
    top_fraction: float = 0.1
    volume: bool = False
    depth_patch: int = 4
    depth_stride: int = 2
    slices: int = 4

    @property
    def occlusion_patch(self) -> tuple[int, ...]:
        """Occlusion's patch per leading axis of an item: ``(patch, patch)``, or ``(.., depth_patch)`` for volumes."""
        return (self.patch, self.patch, self.depth_patch) if self.volume else (self.patch, self.patch)

    @property
    def occlusion_stride(self) -> tuple[int, ...]:
        """Occlusion's stride per leading axis (see :attr:`occlusion_patch`)."""
        return (self.stride, self.stride, self.depth_stride) if self.volume else (self.stride, self.stride)

    def __post_init__(self):
        unknown = sorted(set(self.methods) - set(attribution.METHODS))
        if unknown or not self.methods:
            raise ValueError(f"methods {unknown or '(none)'}: expected some of {', '.join(attribution.METHODS)}")
        for name in ("baseline", "fill"):
            if getattr(self, name) not in ("black", "mean"):
                raise ValueError(f"{name} {getattr(self, name)!r}: expected black or mean")
        for name in ("steps", "patch", "stride", "depth_patch", "depth_stride", "slices"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} {getattr(self, name)}: must be at least 1")
        if not 0 < self.top_fraction <= 1:
            raise ValueError(f"top_fraction {self.top_fraction}: must be in (0, 1]")


def normalised_value(kind: str, mean: float | Sequence[float], std: float | Sequence[float]) -> np.ndarray:
    """The normalised input of a ``black`` pixel or of the ``mean`` pixel (one value per channel, or one)."""
    if kind not in ("black", "mean"):
        raise ValueError(f"{kind!r}: expected black or mean")
    mean = np.asarray(mean, np.float32)
    return (-mean / np.asarray(std, np.float32)) if kind == "black" else np.zeros_like(mean)


def probability_function(
    scores: Callable[[np.ndarray], np.ndarray], multi_label: bool, logits: bool = False
) -> Callable[[np.ndarray], np.ndarray]:
    """``images -> class probabilities [N, K]`` from ``scores`` (a runner): with ``logits``, their softmax (sigmoid
    when ``multi_label``); else scores are kept when they already are probabilities (an exported file's), as
    ``predict`` reads them."""
    from vision_core.classification.predict import to_class_probabilities, to_probabilities

    def probabilities(images: np.ndarray) -> np.ndarray:
        values = np.asarray(scores(images), np.float64)
        if not logits:
            return to_class_probabilities(values) if multi_label else to_probabilities(values)
        if multi_label:
            return (1.0 / (1.0 + np.exp(-values))).astype(np.float32)
        exp = np.exp(values - values.max(axis=1, keepdims=True))
        return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)

    return probabilities


def choose_targets(probabilities: np.ndarray, multi_label: bool, threshold: float) -> list[int]:
    """The classes to explain: the arg-max, or (multi-label) every class at or above ``threshold`` else the arg-max."""
    if multi_label:
        chosen = [int(i) for i in np.flatnonzero(probabilities >= threshold)]
        if chosen:
            return chosen
    return [int(np.argmax(probabilities))]


def gradient_maps(model, item: ExplainItem, targets: list[int], settings: ExplainSettings, baseline) -> dict:
    """``{method: maps [T, H, W]}`` (volumes: ``[T, H, W, D]``) of the gradient methods of ``settings`` on one
    image (Keras ``model``)."""
    images = np.repeat(item.image[None], len(targets), axis=0)
    maps = {}
    if "gradcam" in settings.methods:
        cam = attribution.grad_cam_volume if settings.volume else attribution.grad_cam
        maps["gradcam"] = cam(model, images, targets, settings.layer)
    if "integrated_gradients" in settings.methods:
        attributions = attribution.integrated_gradients(model, images, targets, baseline, settings.steps)
        maps["integrated_gradients"] = attributions if settings.volume else attributions.sum(axis=-1)
    if "saliency" in settings.methods:
        maps["saliency"] = attribution.saliency(model, images, targets, volume=settings.volume)
    return maps


def explain_images(
    items: Sequence[ExplainItem],
    model,
    probabilities: Callable[[np.ndarray], np.ndarray],
    class_names: Sequence[str],
    out_dir: str | os.PathLike,
    settings: ExplainSettings,
    *,
    mean: float | Sequence[float],
    std: float | Sequence[float],
    model_name: str,
    targets: Sequence[int] | None = None,
    multi_label: bool = False,
    compare: tuple[str, Callable[[np.ndarray], np.ndarray]] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Explain ``items`` and write the files of the module docstring to ``out_dir``; returns the JSON's content.

    Args:
        model: the Keras model the gradient methods differentiate (None: occlusion only).
        probabilities: normalised images [N, H, W, C] -> class probabilities [N, K] of the explained model.
        targets: class indices to explain on every image (None: chosen per image, see the module docstring).
        compare: ``(name, probabilities)`` of a second form whose occlusion maps are compared.
    """
    if model is None and set(settings.methods) & set(attribution.GRADIENT_METHODS):
        raise ValueError(f"{model_name}: gradient methods need the Keras model; this form runs occlusion only")
    for item in items:
        if item.image.ndim != 3:
            raise ValueError(
                f"{item.source}: expected a model input [H, W, C] or a volume [H, W, D], got {item.image.shape}"
            )
        for axis, (patch, side) in enumerate(zip(settings.occlusion_patch, item.image.shape)):
            if patch > side:
                what, unit = ("depth patch", "slices") if axis == 2 else ("patch", "px side")
                raise ValueError(f"occlusion {what} {patch} is larger than {item.source}'s {side} {unit}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    baseline = normalised_value(settings.baseline, mean, std)
    fill = normalised_value(settings.fill, mean, std)
    results, taken, pairs = [], set(), []
    for item in tqdm(items, desc="explain", unit="image", disable=not progress):
        stem = _unique(item.name, taken)
        row = np.asarray(probabilities(item.image[None]))[0]
        chosen = list(targets) if targets is not None else choose_targets(row, multi_label, settings.threshold)
        maps = gradient_maps(model, item, chosen, settings, baseline) if model is not None else {}
        if "occlusion" in settings.methods or compare is not None:  # a comparison shows both occlusion maps
            occlusion = attribution.occlusion(
                probabilities, item.image, chosen, settings.occlusion_patch, settings.occlusion_stride, fill
            )
            maps["occlusion"] = occlusion
        if compare is not None:
            maps["occlusion_compare"] = attribution.occlusion(
                compare[1], item.image, chosen, settings.occlusion_patch, settings.occlusion_stride, fill
            )
        entries = []
        for t, target in enumerate(chosen):
            entry = {"class": class_names[target], "index": target, "probability": round(float(row[target]), 5)}
            entry["maps"] = {}
            for method, method_maps in maps.items():
                file = f"{stem}_{_safe(class_names[target])}_{method}.npy"
                _write_npy(out_dir / file, method_maps[t])
                entry["maps"][method] = file
            if compare is not None:
                rho = attribution.rank_correlation(occlusion[t], maps["occlusion_compare"][t])
                constant = math.isnan(rho)  # a constant map has no order to compare
                overlap = attribution.top_k_overlap(occlusion[t], maps["occlusion_compare"][t], settings.top_fraction)
                agreement = {"spearman": None if constant else rho, "top_k_overlap": None if constant else overlap}
                entry["compare"] = {"map": entry["maps"].pop("occlusion_compare"), **agreement}
                pairs.append(agreement)
                if constant:
                    log.info(
                        "%s %s: an occlusion map is constant: not compared with %s",
                        item.name,
                        class_names[target],
                        compare[0],
                    )
                else:
                    log.info(
                        "%s %s: occlusion rank correlation with %s %.3f, top-k overlap %.3f",
                        item.name,
                        class_names[target],
                        compare[0],
                        rho,
                        overlap,
                    )
            entries.append(entry)
        panel = f"{stem}.png"
        if settings.volume:
            slices = [
                panel_slices(maps.get("occlusion", next(iter(maps.values())))[t], settings.slices)
                for t in range(len(chosen))
            ]
            for entry, shown in zip(entries, slices):
                entry["panel_slices"] = shown
            drawn = _volume_panel(item.image, maps, chosen, row, class_names, mean, std, compare, slices)
        else:
            drawn = _panel(item.image, maps, chosen, row, class_names, mean, std, compare)
        write_atomic(out_dir / panel, drawn)
        results.append(
            {
                "file": item.source,
                "panel": panel,
                "label": _label(item.label, class_names),
                "probabilities": {name: round(float(p), 5) for name, p in zip(class_names, row)},
                "targets": entries,
            }
        )
    content = {
        "model": model_name,
        "class_names": list(class_names),
        "methods": list(settings.methods),
        "settings": dataclasses.asdict(settings),
        "compare": _compare_summary(compare, pairs, settings.top_fraction),
        "results": results,
    }
    write_atomic(out_dir / RESULTS_FILE, json.dumps(content, indent=1, default=float).encode())
    if content["compare"] is not None:
        summary = content["compare"]
        log.info(
            "occlusion agreement with %s over %d maps (%d constant): mean Spearman %s, mean top-k overlap %s",
            compare[0],
            len(pairs),
            summary["constant_maps"],
            "none" if summary["spearman_mean"] is None else f"{summary['spearman_mean']:.3f}",
            "none" if summary["top_k_overlap_mean"] is None else f"{summary['top_k_overlap_mean']:.3f}",
        )
    return content


def _compare_summary(compare, pairs: list[dict], top_fraction: float) -> dict[str, Any] | None:
    if compare is None:
        return None
    rhos = [p["spearman"] for p in pairs if p["spearman"] is not None]
    return {
        "model": compare[0],
        "pairs": len(pairs),
        "constant_maps": len(pairs) - len(rhos),  # pairs with a constant map: no ranks to correlate
        "spearman_mean": float(np.mean(rhos)) if rhos else None,
        "spearman_median": float(np.median(rhos)) if rhos else None,  # a few flat maps rank noise against ties
        "top_k_overlap_mean": float(np.mean([p["top_k_overlap"] for p in pairs if p["spearman"] is not None]))
        if rhos
        else None,
        "top_fraction": top_fraction,
    }


def _label(label, class_names: Sequence[str]):
    if label is None:
        return None
    label = np.asarray(label)
    if label.ndim == 0:
        return class_names[int(label)]
    return [name for name, hot in zip(class_names, label) if hot]


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _unique(name: str, taken: set[str]) -> str:
    stem, number = _safe(name), 1
    while stem in taken:
        number += 1
        stem = f"{_safe(name)}_{number}"
    taken.add(stem)
    return stem


def _write_npy(path: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array, np.float32))
    write_atomic(path, buffer.getvalue())


def display_image(image: np.ndarray, mean, std) -> np.ndarray:
    """The model input ``[H, W, C]`` as uint8 RGB pixels ``[H, W, 3]`` (grey repeated)."""
    pixels = np.clip(np.round(image * np.asarray(std, np.float32) + np.asarray(mean, np.float32)), 0, 255)
    pixels = pixels.astype(np.uint8)
    return np.repeat(pixels, 3, axis=-1) if pixels.shape[-1] == 1 else pixels


def overlay(image_rgb: np.ndarray, heat_map: np.ndarray, alpha: float = 0.5, top: float | None = None) -> np.ndarray:
    """``heat_map`` [H, W] (its positive part over ``top``, by default its maximum) in JET colours blended over
    uint8 RGB ``image_rgb``."""
    positive = np.maximum(np.asarray(heat_map, np.float32), 0)
    top = positive.max() if top is None else top
    positive = np.minimum(positive, top)
    scaled = np.uint8(np.round(255 * positive / top)) if top > 0 else np.zeros(positive.shape, np.uint8)
    colours = cv2.cvtColor(cv2.applyColorMap(scaled, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    return np.uint8(np.round((1 - alpha) * image_rgb + alpha * colours))


def _tile(image_rgb: np.ndarray, caption: str, scale: int) -> np.ndarray:
    height, width = image_rgb.shape[:2]
    big = cv2.resize(image_rgb, (width * scale, height * scale), interpolation=cv2.INTER_LINEAR)
    strip = np.full((CAPTION, big.shape[1], 3), 255, np.uint8)
    cv2.putText(strip, caption[: big.shape[1] // 7], (2, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([strip, big])


def _caption(method: str, compare) -> str:
    return f"occlusion {Path(compare[0]).stem}" if method == "occlusion_compare" else method.replace("_", " ")


def _encode(rows: list[np.ndarray]) -> bytes:
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(np.concatenate(rows), cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("OpenCV could not encode the explanation panel")
    return encoded.tobytes()


def _panel(image, maps, targets, row, class_names, mean, std, compare) -> bytes:
    """PNG bytes: one row per target, the image then one overlay per map (see the module docstring)."""
    rgb = display_image(image, mean, std)
    scale = max(1, math.ceil(TILE / rgb.shape[1]))
    rows = []
    for t, target in enumerate(targets):
        tiles = [_tile(rgb, f"{class_names[target]} {row[target]:.2f}", scale)]
        for method, method_maps in maps.items():
            tiles.append(_tile(overlay(rgb, method_maps[t]), _caption(method, compare), scale))
        rows.append(np.concatenate(tiles, axis=1))
    return _encode(rows)


def panel_slices(volume_map: np.ndarray, count: int) -> list[int]:
    """The ``count`` slices of a map ``[H, W, D]`` with the most positive mass, in slice order (ties: lower first)."""
    mass = np.maximum(np.asarray(volume_map, np.float64), 0).sum(axis=(0, 1))
    return sorted(int(k) for k in np.argsort(-mass, kind="stable")[: min(count, len(mass))])


def _volume_panel(volume, maps, targets, row, class_names, mean, std, compare, slices) -> bytes:
    """PNG bytes of a volume: per target, a row per slice of ``slices[t]``, the slice then each map's overlay on it."""
    depth = volume.shape[-1]
    scale = max(1, math.ceil(TILE / volume.shape[1]))
    rows = []
    for t, target in enumerate(targets):
        tops = {method: max(float(np.max(method_maps[t])), 0.0) for method, method_maps in maps.items()}
        for k in slices[t]:
            rgb = display_image(volume[..., k : k + 1], mean, std)
            caption = f"{k + 1}/{depth} {class_names[target]} {row[target]:.2f}"  # tiles are ~27 characters wide
            tiles = [_tile(rgb, caption, scale)]
            for method, method_maps in maps.items():
                heat = overlay(rgb, method_maps[t][..., k], top=tops[method] or None)
                tiles.append(_tile(heat, _caption(method, compare), scale))
            rows.append(np.concatenate(tiles, axis=1))
    return _encode(rows)
