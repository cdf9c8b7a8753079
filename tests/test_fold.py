"""Before QAT, per-channel scales fold into their linear neighbours: the same function, fewer int8 roundings.

A LayerNorm's scale and shift fold into the 1x1 conv or dense layer that alone reads it
(its int8 file then has no DEPTHWISE_CONV_2D for them); a layer scale right after a conv
that only it reads multiplies the conv's kernel and leaves the graph (no MUL). Norms and
scales next to anything else (a 3x3 conv, two readers, an add, a conv's activation, the model output) stay.
"""

import pytest
from conftest import last_json_line, run_python

pytestmark = pytest.mark.slow

CODE = """
import json
import numpy as np
from tflite.audit import audit_ops
from vision_core.backbones.revcol import ChannelScale
from vision_core.backend import keras
from vision_core.layers.normalization import LayerNorm
from vision_core.quant.convert import convert
from vision_core.quant.fold import fold_for_int8
from vision_core.quant.qat import calibrate_ranges, quantize_model, tie_same_scale_ranges

keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
inputs = keras.Input((8, 8, 3), name="image")
x = keras.layers.Conv2D(16, 3, padding="same", name="stem")(inputs)
x = LayerNorm(name="to_pointwise")(x)
x = keras.layers.Conv2D(16, 1, use_bias=False, name="pointwise")(x)
x = ChannelScale(name="after_pointwise")(x)  # folds into a conv that has just gained a bias
x = LayerNorm(name="to_3x3")(x)
x = keras.layers.Conv2D(16, 3, padding="same", name="conv3x3")(x)
x = ChannelScale(name="after_3x3")(x)
x = ChannelScale(name="after_relu")(keras.layers.Conv2D(16, 1, activation="relu", name="relu_conv")(x))
d = keras.layers.DepthwiseConv2D(3, padding="same", name="depthwise")(x)
x = keras.layers.Add(name="add")([ChannelScale(name="after_depthwise")(d), x])
shared = LayerNorm(name="to_two")(x)
x = keras.layers.Add(name="add2")([keras.layers.Conv2D(16, 1, name="left")(shared), shared])
x = ChannelScale(name="after_add")(x)
pooled = keras.layers.GlobalAveragePooling2D(name="pool")(x)
logits = keras.layers.Dense(4, name="predictions")(LayerNorm(name="head_norm")(pooled))
model = keras.Model(inputs, [logits, LayerNorm(name="output_norm")(x)])
for layer in model.layers:
    if isinstance(layer, LayerNorm):
        c = layer.gamma.shape[0]
        layer.set_weights([rng.uniform(0.5, 2, c).astype("float32"), rng.normal(0, 0.5, c).astype("float32")])
    if isinstance(layer, ChannelScale):
        layer.set_weights([rng.uniform(-2, 2, layer.gamma.shape[0]).astype("float32")])
images = rng.normal(size=(32, 8, 8, 3)).astype(np.float32)
folded, counts = fold_for_int8(model)
before, after = model(images), folded(images)
batches = [images[i:i + 8] for i in range(0, 32, 8)]
qat = quantize_model(folded)
calibrate_ranges(qat, folded, batches)
tie_same_scale_ranges(qat)
records = audit_ops(convert(qat, "int8", batches))
ops = [r.op for r in records]
print(json.dumps({
    "counts": counts,
    "layers": [layer.name for layer in folded.layers],
    "max_difference": max(float(np.abs(np.asarray(a) - np.asarray(b)).max()) for a, b in zip(before, after)),
    "norm_weights": {l.name: len(l.weights) for l in folded.layers if isinstance(l, LayerNorm)},
    "pointwise_weights": len(folded.get_layer("pointwise").weights),
    "depthwise_ops": ops.count("DEPTHWISE_CONV_2D"),
    "mul_ops": ops.count("MUL"),
    "float_ops": sorted({r.op for r in records if r.is_float}),
}))
"""


def test_layer_norm_and_layer_scales_fold_into_their_linear_neighbours_with_the_same_outputs():
    result = run_python(CODE, flavour="tf_keras")
    assert result.returncode == 0, result.stderr[-3000:]
    out = last_json_line(result.stdout)
    assert out["counts"] == {"layer_norms": 2, "channel_scales": 3}  # to_pointwise, head_norm; after_pointwise,
    # after_3x3, after_depthwise
    assert [n for n in out["layers"] if n.startswith("after_")] == ["after_relu", "after_add"]
    assert out["max_difference"] < 1e-4
    assert out["norm_weights"] == {"to_pointwise": 0, "to_3x3": 2, "to_two": 2, "head_norm": 0, "output_norm": 2}
    assert out["pointwise_weights"] == 2  # the shift needs a bias the float layer did not have
    # the depthwise conv itself and the scale and shift of the three unfolded NHWC norms
    assert out["depthwise_ops"] == 4
    assert out["mul_ops"] == 2 * 5 + 2  # two per norm (squares, x_hat) and the two unfolded layer scales
    assert out["float_ops"] == []
