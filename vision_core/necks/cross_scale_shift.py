"""RCNet's Cross-scale Shift Network (CSN) and the three int8-safe custom layers RCNet is built from.

CSN (Zong et al., ACM MM 2021, Sec. "Cross-scale Shift Network") takes the five RevFP levels
``P3..P7`` (NHWC float, ``C`` channels each) and lets every level see both adjacent and
non-adjacent levels in one step:

1. **Common scale.** Every level is resized to the size of the second level (P4): P3 by a
   stride-2 max pool, P5..P7 by bilinear upsampling. ``X_l``, l = 0..4.
2. **Multi-scale shift.** With ``g = C / 16`` channels per group, level ``l`` gathers channel
   group k (channels ``[k g, (k+1) g)``) of level ``(l + s_k) mod 5`` for the shifts
   ``s = (+1, -1, +2, -2)`` -- adjacent and non-adjacent levels, cyclic at the ends -- and
   appends them to its own channels::

       S_l = concat(X_{l+1}[0:g], X_{l-1}[g:2g], X_{l+2}[2g:3g], X_{l-2}[3g:4g], X_l)   (C + 4g channels)
       M_l = X_l + Conv1x1_l(ReLU(BN(Conv1x1_l(S_l))))                                  (C channels)

3. **Dual global context** on the five ``M_l`` (each ``(B, H4, W4, C)``):

   * spatial context: scale pooling ``A = mean_l M_l``; channel context fusion
     ``a = N * softmax_{N positions}(Conv1x1_{C->1}(A))``; spatial pooling and transform
     ``G_sp = Conv1x1_{C->C}(mean_{h,w}(a * A))``;
   * scale context: spatial pooling ``m_l = mean_{h,w} M_l`` (five positions); channel
     context fusion ``b = 5 * softmax_l(Conv1x1_{C->1}(m_l))``; scale pooling and transform
     ``G_sc = Conv1x1_{C->C}(mean_l(b_l * m_l))``;

   ``O_l = M_l + G_sp + G_sc`` (the contexts broadcast over positions and levels).
4. ``O_l`` goes back to its level's size (bilinear up for P3, max pool down for P5..P7); RCNet
   adds it to the RevFP output of that level (:mod:`vision_core.necks.rcnet`).

``mean(a * A)`` with ``a = N * softmax`` is the softmax-weighted sum, written as a pooling so
it is one int8 MEAN. Every op lowers to an int8 TFLite builtin: STRIDED_SLICE / CONCATENATION
for the shift, RESIZE_BILINEAR / MAX_POOL_2D for the resizing, and, for the softmax over
positions, the ops of :class:`PositionSoftmax` (see there why not SOFTMAX or DIV).
"""

from __future__ import annotations

from vision_core.backend import keras, tf
from vision_core.layers.conv import conv_bn_act
from vision_core.layers.quantizable import QuantizableLayer, custom_layer

SHIFT_DIVISOR = 16  # channels per shifted group = C / 16
LEVEL_SHIFTS = (1, -1, 2, -2)  # source level of channel groups 0..3, relative to the destination


@custom_layer
class PositionSoftmax(QuantizableLayer):
    """``(B, H, W, 1)`` logits -> ``(B, H, W, 1)`` float weights ``H W * softmax_{h,w}(t * scale * z)``.

    The softmax runs over all ``H * W`` positions of each sample; multiplying by their
    number makes the weights average 1, so ``x * weights`` keeps the size of ``x``.
    ``scale`` is a constant factor, ``t`` a learnable temperature (initial value 1) when
    ``learnable_temperature``.

    Computed as ``e * rsqrt(mean(e))**2`` with ``e = exp(z - max z)``. Not SOFTMAX: its int8
    output has the fixed scale 1/256, which rounds weights near ``1 / (H W)`` to 0 or 1/256
    (cosine 0.95 to float at 32x32, vs 0.998 here). Not DIV: the int8 DIV kernel returned
    garbage (cosine 0.06) for 2 of 10 random convs in front of it; RSQRT and MUL never did.
    """

    quantized_weights = ()
    quantize_output = True

    def __init__(self, scale: float = 1.0, learnable_temperature: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.scale = float(scale)
        self.learnable_temperature = bool(learnable_temperature)

    def build(self, input_shape):
        if int(input_shape[-1]) != 1:
            raise ValueError(f"{self.name}: expects one logit channel, got shape {tuple(input_shape)}")
        if self.learnable_temperature:
            self.temperature = self.add_weight(name="temperature", shape=(), initializer="ones")
        super().build(input_shape)

    def call(self, z):
        z = z * (self.temperature * self.scale if self.learnable_temperature else self.scale)
        e = tf.exp(z - tf.reduce_max(z, axis=(1, 2), keepdims=True))
        inverse_root = tf.math.rsqrt(tf.reduce_mean(e, axis=(1, 2), keepdims=True))
        return e * inverse_root * inverse_root

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "learnable_temperature": self.learnable_temperature}


@custom_layer
class CrossScaleShift(QuantizableLayer):
    """The multi-scale shift for one destination level: L tensors ``(B, H, W, C)`` -> ``(B, H, W, C + 4g)``.

    Output channels: group k (``g`` channels) of level ``(level + LEVEL_SHIFTS[k]) mod L``
    for k = 0..3, then all ``C`` channels of ``level``. Lowers to STRIDED_SLICE + CONCATENATION.

    QAT leaves the output without a fake-quant: the converter then calibrates the
    concatenation's range from the representative data and requantizes the five inputs into
    it. With a fake-quantized output (two fixed scales joined by the scale-preserving slices
    and concatenation) the converter stopped with "violate the same scale constraint" at the
    P3 -> P4 max pool that feeds it (measured, ResNet-18 + RCNet and a CSN-only model).
    """

    quantized_weights = ()
    quantize_output = False

    def __init__(self, level: int, group_channels: int, **kwargs):
        super().__init__(**kwargs)
        self.level = int(level)
        self.group_channels = int(group_channels)

    def build(self, input_shape):
        shapes = [tuple(s) for s in input_shape]
        if len(set(shapes)) != 1 or not 0 <= self.level < len(shapes):
            raise ValueError(f"{self.name}: needs same-shaped levels including level {self.level}, got {shapes}")
        if len(LEVEL_SHIFTS) * self.group_channels > shapes[0][-1]:
            raise ValueError(f"{self.name}: {len(LEVEL_SHIFTS)} groups of {self.group_channels} exceed {shapes[0][-1]}")
        super().build(input_shape)

    def call(self, levels):
        g, count = self.group_channels, len(levels)
        groups = [
            levels[(self.level + shift) % count][..., k * g : (k + 1) * g] for k, shift in enumerate(LEVEL_SHIFTS)
        ]
        return tf.concat([*groups, levels[self.level]], axis=-1)

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape[self.level])
        return (*shape[:-1], shape[-1] + len(LEVEL_SHIFTS) * self.group_channels)

    def get_config(self):
        return {**super().get_config(), "level": self.level, "group_channels": self.group_channels}


@custom_layer
class QuantizedMaxPooling2D(QuantizableLayer):
    """``k x k`` stride-``k`` max pooling with "same" padding whose output QAT fake-quantizes.

    ``(B, H, W, C) -> (B, ceil(H / k), ceil(W / k), C)``. TF-MOT leaves ``MaxPooling2D``'s
    output unquantized, which ties it to the input's range; when such a pooled tensor feeds
    ops that must share one scale (the shift's slices and concatenation) with other
    fake-quantized tensors, the converter stops with "violate the same scale constraint"
    (measured on CSN's P3 -> P4 pool, also with the shift's output left unquantized). With
    its own output range, the converter requantizes.
    """

    quantized_weights = ()
    quantize_output = True
    same_scale_as_input = True  # vision_core.quant.qat.tie_same_scale_ranges re-ties the range after a fine-tune

    def __init__(self, pool_size: int, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = int(pool_size)

    def call(self, x):
        return tf.nn.max_pool2d(x, self.pool_size, self.pool_size, "SAME")

    def compute_output_shape(self, input_shape):
        size = self.pool_size
        spatial = [None if d is None else -(-int(d) // size) for d in input_shape[1:3]]
        return (input_shape[0], *spatial, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size}


def spatial_size(x) -> tuple[int, int]:
    """Static ``(H, W)`` of an NHWC Keras tensor; the necks need fixed input sizes."""
    height, width = x.shape[1], x.shape[2]
    if height is None or width is None:
        raise ValueError(f"necks need static feature sizes, got {tuple(x.shape)}: build with a fixed input_shape")
    return int(height), int(width)


def pool_factor(size: tuple[int, int], target: tuple[int, int]) -> int:
    """The smallest power of two ``k`` with ``ceil(size / k) == target`` in both dimensions.

    Pyramid levels are ``ceil(H / 2**l)``, so level ``a`` pools to level ``b > a`` by
    ``k = 2**(b - a)`` (or a smaller ``k`` where the sizes already reached 1). The ratio of
    sizes does not give ``k``: 5 rows pool to 2 by 4, not by ``2**round(log2(5 / 2)) = 2``.
    """
    factor = 2
    while factor < 2 * max(size):
        if all(-(-s // factor) == t for s, t in zip(size, target)):
            return factor
        factor *= 2
    raise ValueError(f"cannot max-pool {tuple(size)} to {tuple(target)} by a power of two")


def resize_to(x, size: tuple[int, int], *, name: str, upsample: str = "bilinear"):
    """Resize NHWC ``x`` to ``size``: identity, ``Resizing(upsample)`` up, or a power-of-two max pool down.

    Down, a ``k x k`` stride-``k`` max pool with "same" padding (:func:`pool_factor` gives
    ``k``) yields ``ceil(H / k)``, the size stride-2 "same" convs produce at every level; it is
    the exact adaptive max pool when ``k`` divides the size.
    """
    height, width = spatial_size(x)
    if (height, width) == tuple(size):
        return x
    if height <= size[0] and width <= size[1]:
        return keras.layers.Resizing(size[0], size[1], interpolation=upsample, name=name)(x)
    try:
        factor = pool_factor((height, width), size)
    except ValueError as error:
        raise ValueError(f"{name}: {error}") from None
    return QuantizedMaxPooling2D(factor, name=name)(x)


def multi_scale_shift(levels: list, *, name: str) -> list:
    """``M_l = X_l + Conv1x1(ReLU(BN(Conv1x1(S_l))))`` for same-shaped ``X_l``; shapes unchanged."""
    channels = int(levels[0].shape[-1])
    if channels < SHIFT_DIVISOR:
        raise ValueError(f"{name}: the shift moves groups of C / {SHIFT_DIVISOR} channels; got C = {channels}")
    outputs = []
    for index, x in enumerate(levels):
        shifted = CrossScaleShift(index, channels // SHIFT_DIVISOR, name=f"{name}{index}")(levels)
        y = conv_bn_act(shifted, channels, 1, name=f"{name}{index}_reduce")
        y = keras.layers.Conv2D(channels, 1, name=f"{name}{index}_aggregate")(y)
        outputs.append(keras.layers.Add(name=f"{name}{index}_residual")([x, y]))
    return outputs


def _context_pool(x, *, name: str):
    """``Conv1x1_{C->C}(mean_positions(N softmax(Conv1x1_{C->1}(x)) * x))``: ``(B, H, W, C) -> (B, 1, 1, C)``."""
    logits = keras.layers.Conv2D(1, 1, name=f"{name}_logits")(x)
    weights = PositionSoftmax(name=f"{name}_softmax")(logits)
    weighted = keras.layers.Multiply(name=f"{name}_weighted")([x, weights])
    pooled = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_pool")(weighted)
    return keras.layers.Conv2D(int(x.shape[-1]), 1, name=f"{name}_transform")(pooled)


def dual_global_context(levels: list, *, name: str):
    """``G_sp + G_sc`` of same-shaped levels ``(B, H, W, C)``: one ``(B, 1, 1, C)`` context."""
    scale_pooled = keras.layers.Average(name=f"{name}_spatial_scale_pool")(levels)
    spatial = _context_pool(scale_pooled, name=f"{name}_spatial")
    per_level = [
        keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_scale_spatial_pool{i}")(x)
        for i, x in enumerate(levels)
    ]
    stacked = keras.layers.Concatenate(axis=1, name=f"{name}_scale_stack")(per_level)  # (B, L, 1, C)
    scale = _context_pool(stacked, name=f"{name}_scale")
    return keras.layers.Add(name=f"{name}_sum")([spatial, scale])


def cross_scale_shift_network(levels: dict, *, name: str) -> dict:
    """CSN on ``{"P3": ..., "P7": ...}`` (NHWC, same channels): the same keys, each ``O_l`` at its level's size."""
    keys = list(levels)
    common = spatial_size(levels[keys[1]])
    resized = [resize_to(levels[k], common, name=f"{name}_{k.lower()}_to_common") for k in keys]
    shifted = multi_scale_shift(resized, name=f"{name}_shift")
    context = dual_global_context(shifted, name=f"{name}_context")
    outputs = {}
    for key, x in zip(keys, shifted):
        x = keras.layers.Add(name=f"{name}_{key.lower()}_context")([x, context])
        outputs[key] = resize_to(x, spatial_size(levels[key]), name=f"{name}_{key.lower()}_to_level")
    return outputs
