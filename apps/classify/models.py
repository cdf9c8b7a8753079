"""The classifier of the classify app: any registered backbone with its ImageNet-style head.

:func:`build_classifier` takes JSON-friendly keyword arguments (the fields of
:class:`apps.classify.config.ModelConfig` and the class count), so the QAT job rebuilds it
in the tf_keras flavour. Input: ``(B, S, S, C)`` float32 images ``(pixels - 127.5) / 127.5``;
output: ``logits`` float32 ``[B, num_classes]``, for either head: ``softmax`` (one class per image) and
``sigmoid`` (multi-label) differ in the loss and in how scores become probabilities, not in the graph.
With ``volume_shape`` ``"D,H,W"`` the model is a volume ResNet (:mod:`vision_core.backbones.resnet3d`)
taking volumes ``(B, H, W, D)``, their slices last, normalised alike.
"""

from __future__ import annotations

from vision_core.backbones import backbone_options, build_backbone
from vision_core.backbones.revcol import first_column_twin
from vision_core.layers.normalization import set_batch_norm_momentum

HEADS = ("softmax", "sigmoid")


def build_classifier(
    num_classes: int,
    backbone: str = "resnet18",
    input_size: int = 64,
    channels: int = 3,
    backbone_alpha: float = 1.0,
    backbone_variant: str | None = None,
    backbone_layout: str = "tf",
    bn_momentum: float | None = None,
    layer_scale_init: float | None = None,
    first_column_only: bool = False,
    head: str = "softmax",
    volume_shape: str | None = None,
):
    """``backbone`` with a ``num_classes`` head (see the module docstring).

    ``backbone_alpha``: MobileNetV2's width multiplier; ``backbone_variant``: the ResNet layout
    (``keras``: keras.applications', whose ImageNet weights load); ``backbone_layout``: ``tf`` or ``torch``
    padding (:func:`vision_core.backbones.backbone_options`); ``layer_scale_init``: RevCol's ConvNeXt
    layer scales at the start; ``first_column_only``: RevCol cut to its first column, whose
    weights copy into the full model by variable path (the shapes recipes' warm start); ``volume_shape``: the
    volume ResNet ``backbone`` for volumes of ``D,H,W``, ``backbone_alpha`` its width (``channels`` must be 1).
    """
    if head not in HEADS:
        raise ValueError(f"head {head!r}: expected one of {', '.join(HEADS)}")
    if volume_shape is not None:
        from vision_core.backbones.resnet3d import build_volume_resnet
        from vision_core.data.classification.nifti import parse_volume_shape

        if channels != 1:
            raise ValueError(f"volumes have one channel, got channels={channels}")
        model = build_volume_resnet(backbone, parse_volume_shape(volume_shape), num_classes, width=backbone_alpha)
        if bn_momentum is not None:
            set_batch_norm_momentum(model, bn_momentum)
        return model
    options = backbone_options(backbone, backbone_alpha, backbone_variant, backbone_layout)
    if layer_scale_init is not None:
        options["layer_scale_init"] = layer_scale_init
    shape = (input_size, input_size, channels)
    if first_column_only:
        if not backbone.startswith("revcol"):
            raise ValueError(f"first_column_only is a RevCol option; {backbone!r} has no columns")
        model = first_column_twin(backbone, shape, num_classes, **options)
    else:
        model = build_backbone(backbone, shape, num_classes=num_classes, **options)
    if bn_momentum is not None:
        set_batch_norm_momentum(model, bn_momentum)
    return model


def with_sigmoid(model):
    """``model`` (logits) followed by a sigmoid named ``probabilities``: a multi-label classifier as shipped.

    Built with the ``keras`` of the model's flavour (the QAT child calls it on the fake-quantized model).
    """
    from vision_core.backend import keras

    probabilities = keras.layers.Activation("sigmoid", name="probabilities")(model.outputs[0])
    return keras.Model(model.inputs, probabilities, name=model.name)
