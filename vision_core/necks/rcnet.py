"""RCNet (Zong, Cao, Leng, "RCNet: Reverse Feature Pyramid and Cross-scale Shift Network for
Object Detection", ACM MM 2021, arXiv 2110.12130): RevFP + CSN, outputs ``P3..P7``.

Inputs: backbone features ``C3, C4, C5`` (NHWC float, strides 8, 16, 32, any channels).
Outputs: ``{"P3": ..., "P7": ...}``, ``(B, ceil(H / s), ceil(W / s), channels)`` float for
strides s = 8 .. 128, as RetinaNet's heads expect.

Equations implemented (``L_i``: level-i input, ``Up``: bilinear resize to level i,
``Down``: stride-2 max pool to level i, ``GAP``: global average pool, ``N_i = H_i W_i``):

* Lateral inputs: ``L_i = BN(Conv1x1(C_i))`` for i = 3..5; the extra inputs
  ``L_6 = MaxPool2x2(BN(Conv1x1(L_5)))``, ``L_7 = MaxPool2x2(BN(Conv1x1(L_6)))``.
* RevFP, one bottom-up pass with a local top-down input, ``P_i = f_i(L_i, L_{i+1}, P_{i-1})``:

  - feature-guided upsampling (i = 3..6)::

        W_i   = N_i * softmax_{N_i positions}(T_i / sqrt(C) * Conv3x3_{2C->1}(concat(L_i, Up L_{i+1})))
        L'_{i+1} = W_i * Up L_{i+1}                    (T_i learnable, initial value 1)

  - weighted pre-fusion, a sigmoid gate from GAP (one scalar per image)::

        w_i  = sigmoid(Conv1x1_{2C->1}(concat(GAP L_i, GAP L'_{i+1})))
        F_i  = w_i L_i + (1 - w_i) L'_{i+1}

  - weighted post-fusion with the level below (i = 4..6)::

        P'_i = Conv3x3(F_i)
        v_i  = sigmoid(Conv1x1_{2C->1}(concat(GAP P'_i, GAP Down P_{i-1})))
        P_i  = Conv3x3(v_i P'_i + (1 - v_i) Down P_{i-1})

  - ends of the pyramid: ``P_3 = Conv3x3(F_3)`` (no level below); the top level has no
    ``L_8``, so ``P_7 = Conv3x3(u L_7 + (1 - u) Down P_6)``, u from GAPs as above, without
    feature-guided upsampling.
  - every ``Conv3x3`` here is ``ReLU -> Conv3x3 (no bias) -> BN``.
* CSN on ``P_3..P_7`` (:mod:`vision_core.necks.cross_scale_shift`), and the outputs
  ``P_i + CSN_i`` (element-wise addition of the two networks).

The paper's method text is the spec, but the public sources read here give its equations
only in summary; the details below follow the authors' release
(github.com/TempleX98/RCNet, ``mmdet/models/necks/rcfpn.py``, RetinaNet config), read as a
reference only. Where the paper is ambiguous, the choice made:

1. **P6/P7.** RevFP needs inputs ``C6, C7``; they are the release's 1x1 conv + BN + 2x2
   max pool over the level below (not RetinaNet's 3x3 stride-2 convs on C5 / ReLU(P6)).
2. **Temperature.** Summaries write ``W' = W * T / sqrt(d)`` after the softmax; the release
   scales the logits (a temperature) and multiplies the softmax by ``N_i`` so weights
   average 1. Implemented as the release, with ``d = C`` (the neck width) and ``T`` learnt.
3. **Resizing.** "Upsample" is bilinear (half-pixel centres, as PyTorch's
   ``align_corners=False``); downsampling ``P_{i-1}`` and ``L_5 -> L_6`` is a 2x2 max pool.
4. **Conv3x3.** The release's default is a deformable DCNv2 conv; the paper writes Conv3x3,
   and deformable convs have no int8 TFLite kernel: plain 3x3 convs here.
5. **Normalisation.** BN after the lateral, extra, fusion and shift-reduction convs, as the
   release's RetinaNet config; no BN in FPN-style output convs (there are none).
6. **Initialisation.** The attention and gate convs start at zero (uniform attention,
   gates 0.5), as in the release; other convs Glorot-uniform (= Xavier), biases zero.
7. **CSN.** Common scale = P4; shift groups of ``C/16`` channels with shifts +1, -1, +2, -2
   that wrap around the five levels (the release's ``ScaleShift``), appended to the level's
   own channels rather than replacing them; softmax temperature only in RevFP.
8. **Pre-fusion gate.** ``w_i`` pools ``L'_{i+1}``, the upsampled level *after* the
   feature-guided weighting, as the paper writes it; the release pools ``Up L_{i+1}`` before
   the weighting.

With these choices the trainable parameters are, counted from the release's module
definitions, those of the release with plain 3x3 convs: 6,669,586 on ResNet-50's C3..C5 at
256 channels (Keras's ``count_params`` adds the 18 BN layers' moving statistics: 6,678,802).
"""

from __future__ import annotations

from vision_core.backend import keras
from vision_core.layers.conv import conv_bn_act
from vision_core.necks import register_neck
from vision_core.necks.cross_scale_shift import (
    PositionSoftmax,
    QuantizedMaxPooling2D,
    cross_scale_shift_network,
    resize_to,
    spatial_size,
)

LEVELS = (3, 4, 5, 6, 7)


def fusion_conv(x, channels: int, *, name: str):
    """``ReLU -> Conv3x3 (no bias) -> BN``: ``(B, H, W, C) -> (B, H, W, channels)``."""
    x = keras.layers.ReLU(name=f"{name}_relu")(x)
    return conv_bn_act(x, channels, 3, name=name, activation=None)


def feature_guided_upsampling(lateral, upsampled, *, name: str):
    """``W * Up`` with ``W = N softmax_N(T / sqrt(C) Conv3x3(concat(lateral, Up)))``; shape of ``upsampled``."""
    channels = int(lateral.shape[-1])
    lateral_logits = keras.layers.Conv2D(
        1, 3, padding="same", kernel_initializer="zeros", name=f"{name}_logits_lateral"
    )(lateral)
    upsampled_logits = keras.layers.Conv2D(
        1, 3, padding="same", use_bias=False, kernel_initializer="zeros", name=f"{name}_logits_upsampled"
    )(upsampled)
    logits = keras.layers.Add(name=f"{name}_logits")([lateral_logits, upsampled_logits])
    weights = PositionSoftmax(scale=channels**-0.5, learnable_temperature=True, name=f"{name}_softmax")(logits)
    return keras.layers.Multiply(name=f"{name}_weighted")([upsampled, weights])


def weighted_fusion(a, b, *, name: str):
    """``w a + (1 - w) b``, ``w = sigmoid(Conv1x1(concat(GAP a, GAP b)))`` per image; same shape as ``a``.

    Written ``b + w (a - b)``: one MUL instead of two and a ``1 - w``.
    """
    logits = [
        keras.layers.Conv2D(1, 1, use_bias=side == "a", kernel_initializer="zeros", name=f"{name}_gate_{side}")(
            keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_pool_{side}")(x)
        )
        for side, x in (("a", a), ("b", b))
    ]
    logits = keras.layers.Add(name=f"{name}_gate_logits")(logits)
    gate = keras.layers.Activation("sigmoid", name=f"{name}_gate")(logits)
    difference = keras.layers.Subtract(name=f"{name}_difference")([a, b])
    scaled = keras.layers.Multiply(name=f"{name}_scaled")([difference, gate])
    return keras.layers.Add(name=f"{name}_sum")([b, scaled])


def reverse_fusion(lateral, higher, lower=None, *, guided: bool, name: str):
    """One RevFP node ``P_i = f_i(L_i, higher, P_{i-1})`` at the size of ``lateral``.

    ``higher``: ``L_{i+1}`` (upsampled; feature-guided when ``guided``) or, at the top,
    ``P_{i-1}`` (max-pooled); ``lower``: ``P_{i-1}`` for the post-fusion, or ``None``.
    """
    size, channels = spatial_size(lateral), int(lateral.shape[-1])
    higher = resize_to(higher, size, name=f"{name}_resize_higher")
    if guided:
        higher = feature_guided_upsampling(lateral, higher, name=f"{name}_guided")
    x = weighted_fusion(lateral, higher, name=f"{name}_pre")
    if lower is not None:
        x = fusion_conv(x, channels, name=f"{name}_pre_fusion")
        x = weighted_fusion(x, resize_to(lower, size, name=f"{name}_resize_lower"), name=f"{name}_post")
    return fusion_conv(x, channels, name=f"{name}_post_fusion")


def reverse_feature_pyramid(laterals: dict, *, name: str) -> dict:
    """RevFP on ``{3: L_3, ..., 7: L_7}`` (same channels): ``{"P3": ..., "P7": ...}``, level sizes kept."""
    pyramid: dict = {}
    for level in LEVELS:
        top, bottom = level == LEVELS[-1], level == LEVELS[0]
        higher = pyramid[f"P{level - 1}"] if top else laterals[level + 1]
        lower = None if top or bottom else pyramid[f"P{level - 1}"]
        pyramid[f"P{level}"] = reverse_fusion(laterals[level], higher, lower, guided=not top, name=f"{name}_p{level}")
    return pyramid


@register_neck
def rcnet(features: dict, channels: int = 256, *, prefix: str = "rcnet") -> dict:
    """RCNet on ``features`` ``{"C3", "C4", "C5"}``: ``{"P3": ..., "P7": ...}`` (see the module docstring)."""
    laterals = {
        level: conv_bn_act(features[f"C{level}"], channels, 1, activation=None, name=f"{prefix}_lateral{level}")
        for level in (3, 4, 5)
    }
    for level in (6, 7):
        x = conv_bn_act(laterals[level - 1], channels, 1, activation=None, name=f"{prefix}_extra{level}")
        laterals[level] = QuantizedMaxPooling2D(2, name=f"{prefix}_extra{level}_pool")(x)
    revfp = reverse_feature_pyramid(laterals, name=f"{prefix}_revfp")
    csn = cross_scale_shift_network(revfp, name=f"{prefix}_csn")
    return {key: keras.layers.Add(name=f"{prefix}_{key.lower()}")([revfp[key], csn[key]]) for key in revfp}
