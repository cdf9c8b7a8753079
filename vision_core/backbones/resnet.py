"""ResNet 18/34/50/101 (He et al. 2015) with the v1.5, keras.applications and ResNet-D/RS layouts.

Variants (``variant=``):

* ``"v1.5"`` (default): the torchvision layout; stride on the bottleneck's 3x3 conv, no
  conv biases, BN epsilon 1e-5.
* ``"keras"``: keras.applications' ResNet50/101 layout; stride on the first 1x1, conv
  biases, explicit zero padding, BN epsilon 1.001e-5. Layer names match
  keras.applications, so its ImageNet weights load by layer name
  (:func:`load_keras_applications_weights`).
* ``"d"``: ResNet-D ("Bag of Tricks"): deep 3x3 stem and average-pool downsampling in
  the projection shortcut.
* ``"rs"``: ResNet-RS ("Revisiting ResNets"): ResNet-D plus squeeze-excite (ratio 0.25)
  and the stem max pool replaced by a stride-2 3x3 conv.

The individual options (``deep_stem``, ``avg_down``, ``se_ratio``,
``replace_stem_max_pool``) can also be set directly. Inputs are NHWC float images,
already normalised; features C2..C5 are the outputs of stages conv2..conv5.
"""

from __future__ import annotations

from dataclasses import dataclass

from vision_core.backbones.outputs import classifier_model, feature_model
from vision_core.backbones.registry import register_backbone
from vision_core.backend import keras
from vision_core.layers.conv import BN_EPSILON, BN_MOMENTUM

KERAS_BN_EPSILON = 1.001e-5
STAGE_FILTERS = (64, 128, 256, 512)


@dataclass(frozen=True)
class ResNetOptions:
    stride_on_3x3: bool = True
    conv_bias: bool = False
    explicit_padding: bool = False
    bn_epsilon: float = BN_EPSILON
    deep_stem: bool = False
    avg_down: bool = False
    se_ratio: float = 0.0
    replace_stem_max_pool: bool = False


VARIANTS = {
    "v1.5": ResNetOptions(),
    "keras": ResNetOptions(stride_on_3x3=False, conv_bias=True, explicit_padding=True, bn_epsilon=KERAS_BN_EPSILON),
    "d": ResNetOptions(deep_stem=True, avg_down=True),
    "rs": ResNetOptions(deep_stem=True, avg_down=True, se_ratio=0.25, replace_stem_max_pool=True),
}


def _bn(x, opts: ResNetOptions, name: str):
    return keras.layers.BatchNormalization(epsilon=opts.bn_epsilon, momentum=BN_MOMENTUM, name=name)(x)


def _conv(x, filters: int, kernel: int, strides: int, opts: ResNetOptions, name: str):
    if opts.explicit_padding and kernel > 1:
        x = keras.layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
        padding = "valid"
    else:
        padding = "same"
    return keras.layers.Conv2D(filters, kernel, strides=strides, padding=padding, use_bias=opts.conv_bias, name=name)(x)


def _squeeze_excite(x, in_filters: int, opts: ResNetOptions, name: str):
    reduced = max(1, int(in_filters * opts.se_ratio))
    s = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_se_squeeze")(x)
    s = keras.layers.Conv2D(reduced, 1, activation="relu", name=f"{name}_se_reduce")(s)
    s = keras.layers.Conv2D(x.shape[-1], 1, activation="sigmoid", name=f"{name}_se_expand")(s)
    return keras.layers.Multiply(name=f"{name}_se_excite")([x, s])


def _shortcut(x, filters: int, strides: int, opts: ResNetOptions, name: str):
    if opts.avg_down and strides > 1:
        x = keras.layers.AveragePooling2D(strides, strides=strides, padding="same", name=f"{name}_0_pool")(x)
        strides = 1
    x = keras.layers.Conv2D(filters, 1, strides=strides, use_bias=opts.conv_bias, name=f"{name}_0_conv")(x)
    return _bn(x, opts, f"{name}_0_bn")


def _basic_block(x, filters: int, strides: int, project: bool, opts: ResNetOptions, name: str):
    in_filters = x.shape[-1]
    shortcut = _shortcut(x, filters, strides, opts, name) if project else x
    y = _conv(x, filters, 3, strides, opts, f"{name}_1_conv")
    y = keras.layers.ReLU(name=f"{name}_1_relu")(_bn(y, opts, f"{name}_1_bn"))
    y = _bn(_conv(y, filters, 3, 1, opts, f"{name}_2_conv"), opts, f"{name}_2_bn")
    if opts.se_ratio:
        y = _squeeze_excite(y, in_filters, opts, name)
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.ReLU(name=f"{name}_out")(y)


def _bottleneck_block(x, filters: int, strides: int, project: bool, opts: ResNetOptions, name: str):
    in_filters = x.shape[-1]
    shortcut = _shortcut(x, 4 * filters, strides, opts, name) if project else x
    stride_1x1, stride_3x3 = (1, strides) if opts.stride_on_3x3 else (strides, 1)
    y = _conv(x, filters, 1, stride_1x1, opts, f"{name}_1_conv")
    y = keras.layers.ReLU(name=f"{name}_1_relu")(_bn(y, opts, f"{name}_1_bn"))
    y = _conv(y, filters, 3, stride_3x3, opts, f"{name}_2_conv")
    y = keras.layers.ReLU(name=f"{name}_2_relu")(_bn(y, opts, f"{name}_2_bn"))
    y = _bn(_conv(y, 4 * filters, 1, 1, opts, f"{name}_3_conv"), opts, f"{name}_3_bn")
    if opts.se_ratio:
        y = _squeeze_excite(y, in_filters, opts, name)
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.ReLU(name=f"{name}_out")(y)


def _stem(x, opts: ResNetOptions, stem_width: int):
    if opts.deep_stem:
        for i, (filters, strides) in enumerate(((stem_width, 2), (stem_width, 1), (2 * stem_width, 1)), start=1):
            x = _conv(x, filters, 3, strides, opts, f"stem{i}_conv")
            x = keras.layers.ReLU(name=f"stem{i}_relu")(_bn(x, opts, f"stem{i}_bn"))
    else:
        x = _conv(x, 64, 7, 2, opts, "conv1_conv")
        x = keras.layers.ReLU(name="conv1_relu")(_bn(x, opts, "conv1_bn"))
    if opts.replace_stem_max_pool:
        x = _conv(x, x.shape[-1], 3, 2, opts, "pool1_conv")
        return keras.layers.ReLU(name="pool1_relu")(_bn(x, opts, "pool1_bn"))
    if opts.explicit_padding:
        x = keras.layers.ZeroPadding2D(1, name="pool1_pad")(x)
        return keras.layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    return keras.layers.MaxPooling2D(3, strides=2, padding="same", name="pool1_pool")(x)


def resnet(
    input_shape,
    depths: tuple[int, ...],
    bottleneck: bool,
    name: str,
    num_classes: int | None = None,
    *,
    variant: str = "v1.5",
    classifier_activation: str | None = None,
    widths: tuple[int, ...] = STAGE_FILTERS,
    stem_width: int = 32,
    **overrides,
):
    """Build a ResNet; ``overrides`` set :class:`ResNetOptions` fields over the variant's.

    ``widths``: the stages' base widths (a bottleneck's output is 4x); ``stem_width``: the deep
    stem's first two convs (its third has twice as many), timm's ``channels`` and ``stem_width``.
    PyTorch-trained weights (timm, torchvision) compute what they compute in PyTorch with
    ``explicit_padding=True`` (symmetric padding of the strided convs and the stem's max pool).
    """
    if variant not in VARIANTS:
        raise ValueError(f"{name}: unknown variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    opts = ResNetOptions(**{**VARIANTS[variant].__dict__, **overrides})
    block = _bottleneck_block if bottleneck else _basic_block
    inputs = keras.Input(input_shape, name="image")
    x = _stem(inputs, opts, stem_width)
    features = {}
    for stage, (filters, depth) in enumerate(zip(widths, depths)):
        for i in range(depth):
            strides = 2 if (i == 0 and stage > 0) else 1
            out_filters = 4 * filters if bottleneck else filters
            project = i == 0 and (stage > 0 or x.shape[-1] != out_filters)
            x = block(x, filters, strides, project, opts, f"conv{stage + 2}_block{i + 1}")
        features[f"C{stage + 2}"] = x
    if num_classes is None:
        return feature_model(inputs, features, name)
    return classifier_model(inputs, x, num_classes, name, classifier_activation=classifier_activation)


@register_backbone
def resnet18(input_shape, num_classes=None, **options):
    return resnet(input_shape, (2, 2, 2, 2), False, "resnet18", num_classes, **options)


@register_backbone
def resnet34(input_shape, num_classes=None, **options):
    return resnet(input_shape, (3, 4, 6, 3), False, "resnet34", num_classes, **options)


@register_backbone
def resnet50(input_shape, num_classes=None, **options):
    return resnet(input_shape, (3, 4, 6, 3), True, "resnet50", num_classes, **options)


@register_backbone
def resnet101(input_shape, num_classes=None, **options):
    return resnet(input_shape, (3, 4, 23, 3), True, "resnet101", num_classes, **options)
