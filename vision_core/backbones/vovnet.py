"""VoVNet V1 (Lee et al. 2019) and VoVNetV2 (CenterMask, Lee & Park 2020): One-Shot Aggregation.

An OSA block runs ``L`` 3x3 convs in a chain and concatenates the block input with every
intermediate output *once*, then fuses them with a 1x1 conv::

    x -> conv3x3 -> conv3x3 -> ... (L)        each conv: conv -> BN -> ReLU
    concat[x, y1, ..., yL] -> conv1x1 (out channels) [-> eSE] [+ x]

VoVNetV2 adds two things to V1:

* effective Squeeze-Excitation (eSE): global average pool -> one 1x1 conv (C -> C, with
  bias, no channel reduction) -> hard sigmoid ``relu6(s + 3) / 6`` -> rescale the block
  output. As in timm's ``ese_vovnet*b`` (and the stage logic of the official
  detectron2 code), eSE sits on the last block of each stage; the official detectron2
  checkpoints carry it on every block (``ese_on_every_block=True``, ese-VoVNet-39:
  26.2M instead of 24.6M parameters).
* identity mapping: every block but the first of a stage adds its input to its output;
  such a block's aggregation BN scale starts at zero, so it starts as the identity.

The ``depthwise`` ("DW") 19-layer variants replace the 3x3 convs of the stem's last two
layers and of the OSA blocks by depthwise 3x3 -> pointwise 1x1 -> BN -> ReLU (no norm
between the two), with a 1x1 reduction conv in front of a block whose input width
differs from its conv width.

Layout: stem (3x3 s2, 3x3, 3x3 s2; stride 4) then stages 2..5; stages 3..5 start with a
3x3 stride-2 max pool (PyTorch ``ceil_mode=True``; ``padding="same"`` is identical for
even input sides, i.e. any input that is a multiple of 32).

Inputs: ``image`` float32 ``(batch, H, W, 3)``, already normalised. Features: C2..C5 are
the outputs of stages 2..5, ``(batch, H/s, W/s, C)`` for strides 4, 8, 16, 32 with
C = ``stage_out_filters`` (256, 512, 768, 1024; slim: 112, 256, 384, 512). With
``num_classes``: global average pool -> ``predictions`` dense, the official ImageNet head.
"""

from __future__ import annotations

from dataclasses import dataclass

from vision_core.backbones.outputs import classifier_model, feature_model
from vision_core.backbones.registry import register_backbone
from vision_core.backend import keras
from vision_core.layers.conv import conv_bn_act


@dataclass(frozen=True)
class VoVNetSpec:
    stem_filters: tuple[int, int, int]
    stage_filters: tuple[int, int, int, int]  # width of the 3x3 convs inside each OSA block
    stage_out_filters: tuple[int, int, int, int]  # width of the 1x1 aggregation conv = stage output
    layers_per_block: int
    blocks_per_stage: tuple[int, int, int, int]
    ese: bool
    identity: bool
    depthwise: bool


_WIDE = dict(stage_filters=(128, 160, 192, 224), stage_out_filters=(256, 512, 768, 1024))
_SLIM = dict(stage_filters=(64, 80, 96, 112), stage_out_filters=(112, 256, 384, 512))

SPECS = {
    "vovnet39": VoVNetSpec(
        (64, 64, 128),
        **_WIDE,
        layers_per_block=5,
        blocks_per_stage=(1, 1, 2, 2),
        ese=False,
        identity=False,
        depthwise=False,
    ),
    "vovnet57": VoVNetSpec(
        (64, 64, 128),
        **_WIDE,
        layers_per_block=5,
        blocks_per_stage=(1, 1, 4, 3),
        ese=False,
        identity=False,
        depthwise=False,
    ),
    "ese_vovnet19_slim": VoVNetSpec(
        (64, 64, 64),
        **_SLIM,
        layers_per_block=3,
        blocks_per_stage=(1, 1, 1, 1),
        ese=True,
        identity=True,
        depthwise=True,
    ),
    "ese_vovnet19": VoVNetSpec(
        (64, 64, 128),
        **_WIDE,
        layers_per_block=3,
        blocks_per_stage=(1, 1, 1, 1),
        ese=True,
        identity=True,
        depthwise=False,
    ),
    "ese_vovnet39": VoVNetSpec(
        (64, 64, 128),
        **_WIDE,
        layers_per_block=5,
        blocks_per_stage=(1, 1, 2, 2),
        ese=True,
        identity=True,
        depthwise=False,
    ),
    "ese_vovnet57": VoVNetSpec(
        (64, 64, 128),
        **_WIDE,
        layers_per_block=5,
        blocks_per_stage=(1, 1, 4, 3),
        ese=True,
        identity=True,
        depthwise=False,
    ),
}


def separable_conv_bn_act(x, filters: int, strides: int = 1, *, name: str, padding: str = "same"):
    """Depthwise 3x3 -> pointwise 1x1 -> BN -> ReLU; ``(B, H, W, Cin) -> (B, H/s, W/s, filters)``."""
    x = keras.layers.DepthwiseConv2D(3, strides=strides, padding=padding, use_bias=False, name=f"{name}_dwconv")(x)
    return conv_bn_act(x, filters, 1, name=name)


def hard_sigmoid(x, name: str):
    """``relu6(x + 3) / 6`` from plain layers.

    Not ``Activation("hard_sigmoid")``: Keras 3 defines it as above but tf_keras as
    ``clip(0.2 x + 0.5, 0, 1)``, so the QAT flavour would compute a different gate.
    """
    x = keras.layers.Rescaling(1.0, offset=3.0, name=f"{name}_shift")(x)
    x = keras.layers.ReLU(max_value=6.0, name=f"{name}_relu6")(x)
    return keras.layers.Rescaling(1.0 / 6.0, name=f"{name}_scale")(x)


def effective_squeeze_excite(x, name: str):
    """eSE: ``x * hard_sigmoid(conv1x1(mean_hw(x)))`` with one C -> C conv; shape unchanged."""
    s = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_squeeze")(x)
    s = keras.layers.Conv2D(x.shape[-1], 1, use_bias=True, name=f"{name}_fc")(s)
    s = hard_sigmoid(s, f"{name}_gate")
    return keras.layers.Multiply(name=f"{name}_excite")([x, s])


def osa_block(x, spec: VoVNetSpec, filters: int, out_filters: int, *, ese: bool, identity: bool, name: str):
    """One-Shot Aggregation block: ``(B, H, W, Cin) -> (B, H, W, out_filters)``."""
    shortcut = x
    aggregated = [x]
    if spec.depthwise and x.shape[-1] != filters:
        x = conv_bn_act(x, filters, 1, name=f"{name}_reduction")
    for i in range(1, spec.layers_per_block + 1):
        if spec.depthwise:
            x = separable_conv_bn_act(x, filters, name=f"{name}_layer{i}")
        else:
            x = conv_bn_act(x, filters, 3, name=f"{name}_layer{i}")
        aggregated.append(x)
    x = keras.layers.Concatenate(name=f"{name}_aggregate")(aggregated)
    # A block with identity mapping starts as the identity: its last BN scale is zero.
    x = conv_bn_act(x, out_filters, 1, name=f"{name}_concat", bn_gamma_initializer="zeros" if identity else "ones")
    if ese:
        x = effective_squeeze_excite(x, f"{name}_ese")
    if identity:
        x = keras.layers.Add(name=f"{name}_identity")([x, shortcut])
    return x


def _stem(x, spec: VoVNetSpec, torch_padding: bool = False):
    """Three 3x3 conv-BN-ReLU (strides 2, 1, 2): ``(B, H, W, 3) -> (B, H/4, W/4, stem_filters[2])``.

    ``torch_padding``: the strided convs pad one pixel on every side (PyTorch) instead of TF "same"."""
    for i, strides in ((1, 2), (2, 1), (3, 2)):
        padding = "same"
        if torch_padding and strides == 2:
            x = keras.layers.ZeroPadding2D(1, name=f"stem{i}_pad")(x)
            padding = "valid"
        if spec.depthwise and i > 1:
            x = separable_conv_bn_act(x, spec.stem_filters[i - 1], strides, name=f"stem{i}", padding=padding)
        else:
            x = conv_bn_act(x, spec.stem_filters[i - 1], 3, strides=strides, name=f"stem{i}", padding=padding)
    return x


def vovnet(
    input_shape,
    spec: VoVNetSpec,
    name: str,
    num_classes: int | None = None,
    *,
    ese_on_every_block: bool = False,
    dropout: float = 0.0,
    classifier_activation: str | None = None,
    torch_padding: bool = False,
):
    """Build a VoVNet from ``spec``; see the module docstring for outputs and options.

    PyTorch-trained weights (timm, the official detectron2 release) compute what they compute in
    PyTorch with ``torch_padding=True`` (symmetric padding of the stem's strided convs)."""
    inputs = keras.Input(input_shape, name="image")
    x = _stem(inputs, spec, torch_padding)
    features = {}
    for index, blocks in enumerate(spec.blocks_per_stage):
        stage = index + 2
        if stage > 2:
            x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name=f"stage{stage}_pool")(x)
        for block in range(blocks):
            x = osa_block(
                x,
                spec,
                spec.stage_filters[index],
                spec.stage_out_filters[index],
                ese=spec.ese and (ese_on_every_block or block == blocks - 1),
                identity=spec.identity and block > 0,
                name=f"stage{stage}_osa{block + 1}",
            )
        features[f"C{stage}"] = x
    if num_classes is None:
        return feature_model(inputs, features, name)
    return classifier_model(inputs, x, num_classes, name, dropout=dropout, classifier_activation=classifier_activation)


@register_backbone
def vovnet39(input_shape, num_classes=None, **options):
    return vovnet(input_shape, SPECS["vovnet39"], "vovnet39", num_classes, **options)


@register_backbone
def vovnet57(input_shape, num_classes=None, **options):
    return vovnet(input_shape, SPECS["vovnet57"], "vovnet57", num_classes, **options)


@register_backbone
def ese_vovnet19_slim(input_shape, num_classes=None, **options):
    return vovnet(input_shape, SPECS["ese_vovnet19_slim"], "ese_vovnet19_slim", num_classes, **options)


@register_backbone
def ese_vovnet19(input_shape, num_classes=None, **options):
    return vovnet(input_shape, SPECS["ese_vovnet19"], "ese_vovnet19", num_classes, **options)


@register_backbone
def ese_vovnet39(input_shape, num_classes=None, **options):
    return vovnet(input_shape, SPECS["ese_vovnet39"], "ese_vovnet39", num_classes, **options)


@register_backbone
def ese_vovnet57(input_shape, num_classes=None, **options):
    return vovnet(input_shape, SPECS["ese_vovnet57"], "ese_vovnet57", num_classes, **options)
