"""Volume classifiers of Tran et al. 2018, "A Closer Look at Spatiotemporal Convolutions for Action
Recognition", in int8-convertible ops: R3D-18, MC3-18 and R(2+1)D-18 (torchvision's ``r3d_18``, ``mc3_18``,
``r2plus1d_18``, which the brain-MR paper (Chatterjee et al. 2021) classifies tumours with).

All three are the 18-layer video ResNet: a stem (``3x7x7``, stride ``1x2x2``), four stages of two basic
blocks with ``64, 128, 256, 512`` channels (times ``width``), the last three starting with stride 2, global
average pooling and a ``Dense`` layer named ``logits``. They differ in the convolution of the blocks:

* ``r3d_18``: every conv ``3x3x3`` (a stage's stride 2 in depth, height and width);
* ``mc3_18`` (mixed convolution, MC3): ``3x3x3`` in the stem and the first stage, ``1x3x3`` (2D, each slice
  alone) in the other three, whose stride is 2 in height and width only;
* ``r2plus1d_18``: each ``3x3x3`` conv of ``N_in -> N_out`` channels factorised into a ``1x3x3`` spatial
  conv to ``M`` channels, batch norm, ReLU, and a ``3x1x1`` conv over depth to ``N_out``, with the paper's
  ``M = floor(3 * 9 * N_in * N_out / (9 * N_in + 3 * N_out))`` (its eq. for ``t = d = 3``; the stem's
  ``3x7x7``: ``floor(3 * 49 * N_in * N_out / (49 * N_in + 3 * N_out))``), so it holds as many weights as
  the 3D conv it replaces. torchvision instead uses one ``M`` per block (its first conv's) and 45 in the stem.

Shortcuts are a ``1x1x1`` conv with batch norm where the shape changes (stride 2 in depth too, except in
MC3's 2D stages; the depth stride is taken after the batch norm, which computes the same and converts to int8,
see :mod:`vision_core.layers.volume`). The depth axis is the slice axis of the volume.

Input ``[B, H, W, D]`` float32: a volume's ``D`` slices as the channels of one image (NIfTI's array order,
slices last), normalised as the classify app's images are; the network runs on the slices folded into the
batch (:mod:`vision_core.layers.volume`), so every conv is a ``Conv2D`` and the int8 TFLite graph is all int8.
Every layer is named, so weights copy by variable path into the tf_keras twin that QAT builds.
"""

from __future__ import annotations

from vision_core.backend import keras
from vision_core.layers.conv import BN_EPSILON, BN_MOMENTUM
from vision_core.layers.volume import DepthUnfold, SlicesToBatch, SlicesToRows

STAGE_CHANNELS = (64, 128, 256, 512)
BLOCKS_PER_STAGE = 2
# The convolution of each stage's blocks: "3d" (3x3x3), "2d" (1x3x3) or "2+1d" (1x3x3 then 3x1x1).
STAGE_CONVS = {
    "r3d_18": ("3d", "3d", "3d", "3d"),
    "mc3_18": ("3d", "2d", "2d", "2d"),
    "r2plus1d_18": ("2+1d", "2+1d", "2+1d", "2+1d"),
}
VOLUME_RESNETS = tuple(STAGE_CONVS)


def mid_channels(in_channels: int, out_channels: int, spatial: int = 3, temporal: int = 3) -> int:
    """Tran et al.'s ``M_i``: the channels between the spatial and the depth conv of a (2+1)D factorisation of a
    ``temporal x spatial x spatial`` conv, so that both hold as many weights as the full 3D conv."""
    full = temporal * spatial * spatial * in_channels * out_channels
    return full // (spatial * spatial * in_channels + temporal * out_channels)


def volume_conv(x, filters: int, kernel: tuple[int, int, int], strides: tuple[int, int], depth: int, *, name: str):
    """A ``kd x kh x kw`` conv of ``strides`` ``(depth, height/width)`` on slices ``[B*depth, H, W, C]``
    without bias: ``(output, output depth)``. ``kd > 1`` or a depth stride gathers the slices it reads first
    (:class:`DepthUnfold`); the conv itself is always ``Conv2D`` named ``{name}_conv``."""
    kd, kh, kw = kernel
    depth_stride, stride = strides
    if kd > 1 or depth_stride > 1:
        unfold = DepthUnfold(depth, kd, depth_stride, name=f"{name}_unfold")
        x, depth = unfold(x), unfold.output_depth
    x = keras.layers.Conv2D(filters, (kh, kw), stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    return x, depth


def _bn(x, name: str, relu: bool):
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x) if relu else x


def _block_conv(x, kind: str, in_channels: int, filters: int, stride: int, depth: int, name: str, relu: bool):
    """One conv of a basic block with its batch norm (and ReLU when ``relu``): ``(output, depth)``."""
    if kind == "3d":
        x, depth = volume_conv(x, filters, (3, 3, 3), (stride, stride), depth, name=name)
    elif kind == "2d":
        x, depth = volume_conv(x, filters, (1, 3, 3), (1, stride), depth, name=name)
    else:
        mid = mid_channels(in_channels, filters)
        x, depth = volume_conv(x, mid, (1, 3, 3), (1, stride), depth, name=f"{name}_spatial")
        x = _bn(x, f"{name}_spatial", relu=True)
        x, depth = volume_conv(x, filters, (3, 1, 1), (stride, 1), depth, name=f"{name}_temporal")
    return _bn(x, name, relu), depth


def basic_block(x, kind: str, in_channels: int, filters: int, stride: int, depth: int, *, name: str):
    """Two convs of ``kind`` and the shortcut (a strided ``1x1x1`` conv where the shape changes): ``(out, depth)``."""
    y, out_depth = _block_conv(x, kind, in_channels, filters, stride, depth, f"{name}_conv1", relu=True)
    y, out_depth = _block_conv(y, kind, filters, filters, 1, out_depth, f"{name}_conv2", relu=False)
    if stride != 1 or in_channels != filters:
        x, _ = volume_conv(x, filters, (1, 1, 1), (1, stride), depth, name=f"{name}_downsample")
        x = _bn(x, f"{name}_downsample", relu=False)
        if kind != "2d" and stride > 1:
            x = DepthUnfold(depth, 1, stride, name=f"{name}_downsample_depth")(x)
    y = keras.layers.Add(name=f"{name}_add")([y, x])
    return keras.layers.ReLU(name=f"{name}_out")(y), out_depth


def build_volume_resnet(
    name: str,
    volume_shape: tuple[int, int, int],
    num_classes: int,
    width: float = 1.0,
) -> keras.Model:
    """The volume ResNet ``name`` (one of :data:`VOLUME_RESNETS`) for volumes of ``volume_shape`` ``(D, H, W)``.

    ``width`` scales every stage's channels (``round(64 * width)`` in the first; at least 8). Input
    ``volume`` float32 ``[B, H, W, D]``; output ``logits`` float32 ``[B, num_classes]``.
    """
    if name not in STAGE_CONVS:
        raise ValueError(f"unknown volume network {name!r}: expected one of {', '.join(VOLUME_RESNETS)}")
    depth, height, width_pixels = (int(v) for v in volume_shape)
    if min(depth, height, width_pixels) < 1:
        raise ValueError(f"volume shape {tuple(volume_shape)}: every side must be at least 1")
    channels = [max(8, round(c * width)) for c in STAGE_CHANNELS]
    convs = STAGE_CONVS[name]
    inputs = keras.Input((height, width_pixels, depth), name="volume")
    x = SlicesToBatch(name="slices")(inputs)
    if convs[0] == "2+1d":
        mid = mid_channels(1, channels[0], spatial=7)
        x, d = volume_conv(x, mid, (1, 7, 7), (1, 2), depth, name="stem_spatial")
        x = _bn(x, "stem_spatial", relu=True)
        x, d = volume_conv(x, channels[0], (3, 1, 1), (1, 1), d, name="stem_temporal")
    else:
        x, d = volume_conv(x, channels[0], (3, 7, 7), (1, 2), depth, name="stem")
    x = _bn(x, "stem", relu=True)
    in_channels = channels[0]
    for stage, (kind, filters) in enumerate(zip(convs, channels), start=1):
        for block in range(BLOCKS_PER_STAGE):
            stride = 2 if stage > 1 and block == 0 else 1
            x, d = basic_block(x, kind, in_channels, filters, stride, d, name=f"stage{stage}_block{block + 1}")
            in_channels = filters
    x = SlicesToRows(d, name="volume_rows")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)
