"""The input normalisation pretrained weights expect, folded into the backbone's stem.

Every model of this suite takes images as ``x = pixel / 127.5 - 1`` (range [-1, 1]); its exports'
metadata say so. Pretrained weights were trained on other inputs: keras.applications' ResNets on
caffe-style BGR pixels minus a mean, timm / torchvision / the official PyTorch releases on RGB in
[0, 1] normalised with a mean and a std. The source's input channel ``s`` is an affine function of
one of our channels: ``x'_s = scale_s * x[order_s] + shift_s`` (``order`` permutes RGB to BGR).

:func:`fold_input_norm` rewrites the weights so that the backbone computes on ``x`` what the source
computes on ``x'``: the stem conv's kernel becomes ``W[..., c, :] = sum_{s: order_s = c} W_src[..., s, :]
* scale_s`` and the constant ``sum_{kh, kw, s} W_src[kh, kw, s, :] * shift_s`` goes into the conv's bias,
or, when the conv has none, into the moving mean of the batch norm right after it (``moving_mean -
constant``). A weight transform only: models, exports and their metadata stay as they are. It is
exact except where the stem conv reads its zero padding (the border of the feature maps): a zero
there is ``x' = shift`` for the source, zero for us. A grey model (one input channel) gets the kernel
summed over the source's channels, so it computes what the source computes on the grey image
repeated to three channels.

Which normalisation (:func:`source_input_norm`):

* keras.applications (``imagenet``, an ``.h5``): ResNet-50/101 caffe (BGR, 0-255 minus the mean
  (103.939, 116.779, 123.68)); MobileNetV2 [-1, 1], ours (nothing folded for RGB).
* vovnet-detectron2's ``.pth`` (recognised by its ``OSA`` names): detectron2's defaults, BGR 0-255
  minus (103.530, 116.280, 123.675), std 1.
* timm weights of the ``ra4_e3600`` recipes (``resnet34.ra4_e3600_r224_in1k``,
  ``ese_vovnet57b.ra4_e3600_r256_in1k``, ...; timm's pretrained cfg says mean and std 0.5), recognised
  by ``ra4_e3600`` in the file's path (the Hugging Face cache keeps the tag in its folder name; name a
  copied file after its tag): [0, 1] with mean = std = 0.5, which is ours.
* every other PyTorch checkpoint (timm's other tags, torchvision, EMOv2, RevCol): RGB in [0, 1]
  with ImageNet's mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225).
* a suite ``.weights.npz`` takes our inputs already: nothing is folded (:mod:`vision_core.app.transfer`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vision_core.backbones.torch_layouts import family_of
from vision_core.errors import AppError

RGB, BGR = (0, 1, 2), (2, 1, 0)
# Each family's stem conv and the batch norm right after it (None: a layer norm follows, the conv has a bias),
# by our layer names; the first whose kernel the weights hold is the stem.
STEMS = {
    "resnet": (("conv1_conv", "conv1_bn"), ("stem1_conv", "stem1_bn")),
    "mobilenet_v2": (("Conv1", "bn_Conv1"),),
    "vovnet": (("stem1_conv", "stem1_bn"),),
    "emov2": (("stem_conv_conv", "stem_conv_bn"),),
    "revcol": (("stem_conv", None),),
}


@dataclass(frozen=True)
class InputNorm:
    """The source's input channel ``s`` is ``scale[s] * x[order[s]] + shift[s]`` of our ``x`` in [-1, 1]."""

    name: str
    order: tuple[int, ...]
    scale: tuple[float, ...]
    shift: tuple[float, ...]

    def is_ours(self) -> bool:
        return self.order == RGB and self.scale == (1.0,) * 3 and self.shift == (0.0,) * 3


def pixel_norm(name: str, mean, std, divisor: float, order: tuple[int, ...] = RGB) -> InputNorm:
    """A source that takes ``(pixel / divisor - mean) / std`` per channel, channels in ``order``."""
    half = 127.5 / divisor  # pixel / divisor = half * (x + 1)
    return InputNorm(
        name,
        order,
        tuple(float(half / s) for s in std),
        tuple(float((half - m) / s) for m, s in zip(mean, std, strict=True)),
    )


OURS = InputNorm("[-1, 1] (ours)", RGB, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
IMAGENET_MEAN_STD = pixel_norm(
    "RGB [0, 1], ImageNet mean (0.485, 0.456, 0.406) std (0.229, 0.224, 0.225)",
    (0.485, 0.456, 0.406),
    (0.229, 0.224, 0.225),
    255.0,
)
HALF_MEAN_STD = pixel_norm("RGB [0, 1], mean 0.5 std 0.5", (0.5,) * 3, (0.5,) * 3, 255.0)
CAFFE = pixel_norm(
    "caffe: BGR 0-255 minus (103.939, 116.779, 123.68)", (103.939, 116.779, 123.68), (1.0,) * 3, 1.0, BGR
)
DETECTRON2 = pixel_norm(
    "detectron2: BGR 0-255 minus (103.530, 116.280, 123.675)", (103.530, 116.280, 123.675), (1.0,) * 3, 1.0, BGR
)
HALF_MEAN_STD_TAG = "ra4_e3600"  # timm's recipe whose weights take mean = std = 0.5


def source_input_norm(backbone: str, kind: str, path: Path | None = None, names=()) -> InputNorm:
    """The normalisation weights of ``kind`` (``keras`` or ``torch``) for ``backbone`` expect; ``path`` and the
    checkpoint's tensor ``names`` tell torch sources apart (see the module docstring)."""
    if kind == "keras":
        return CAFFE if family_of(backbone) == "resnet" else OURS
    if any("OSA" in n for n in names):
        return DETECTRON2
    if path is not None and HALF_MEAN_STD_TAG in str(path):
        return HALF_MEAN_STD
    return IMAGENET_MEAN_STD


def stem_layers(backbone: str, weights: dict[str, np.ndarray]) -> tuple[str, str | None]:
    """``(stem conv, its batch norm or None)`` of ``backbone``'s ``weights`` (our layer names)."""
    for conv, norm in STEMS[family_of(backbone)]:
        if f"{conv}/kernel" in weights:
            return conv, norm
    raise AppError(f"no stem conv of {backbone} in the weights (looked for {STEMS[family_of(backbone)]})")


def fold_input_norm(
    backbone: str, weights: dict[str, np.ndarray], norm: InputNorm, channels: int
) -> tuple[dict[str, np.ndarray], str | None]:
    """``(weights, note)``: ``weights`` with ``norm`` folded into the stem for a model of ``channels`` input
    channels (3, or 1 for grey: the kernel summed over the source's channels), and a note for the log saying
    what was folded where (None when nothing changed). Exact except at the stem conv's zero-padded border."""
    if norm.is_ours() and channels == 3:
        return weights, None
    conv, bn = stem_layers(backbone, weights)
    kernel = np.asarray(weights[f"{conv}/kernel"], dtype=np.float64)
    if kernel.shape[2] != 3:
        raise AppError(f"{backbone} stem {conv}/kernel {kernel.shape}: expected the source's 3 input channels")
    if channels not in (1, 3):
        raise AppError(f"{backbone}: pretrained weights take 3 (RGB) or 1 (grey) input channels, not {channels}")
    scaled = kernel * np.asarray(norm.scale)[None, None, :, None]
    folded = np.zeros(kernel.shape[:2] + (channels,) + kernel.shape[3:])
    for s, c in enumerate(norm.order):
        folded[:, :, c if channels == 3 else 0] += scaled[:, :, s]
    constant = np.einsum("hwso,s->o", kernel, np.asarray(norm.shift))
    out = dict(weights)
    out[f"{conv}/kernel"] = folded.astype(np.float32)
    if f"{conv}/bias" in weights:
        target = f"{conv}/bias"
        out[target] = (np.asarray(weights[target], dtype=np.float64) + constant).astype(np.float32)
    elif bn is not None and f"{bn}/moving_mean" in weights:
        target = f"{bn}/moving_mean"
        out[target] = (np.asarray(weights[target], dtype=np.float64) - constant).astype(np.float32)
    else:
        raise AppError(f"{backbone}: stem {conv} has neither a bias nor a batch norm to take the input shift")
    grey = ", summed over the source's channels for 1-channel input" if channels == 1 else ""
    note = (
        f"folded the source's input normalisation ({norm.name}) into {conv}/kernel and {target}{grey}; "
        "our inputs stay x/127.5-1, exact except at the stem's zero-padded border"
    )
    return out, note
