"""TF-MOT 0.8.1's quantize_apply moves a fused conv-BN-ReLU input of a Concatenate after the others;
quantize_model refuses such a model by name instead of training a QAT model with permuted channels."""

import pytest
from conftest import last_json_line, run_python

pytestmark = pytest.mark.slow

CODE = """
import json
from vision_core.backend import keras
from vision_core.quant.qat import quantize_model


def model(fused_first_branch):
    x = keras.Input((8, 8, 3))
    first = keras.layers.Conv2D(4, 3, padding="same", name="first_conv")(x)
    if fused_first_branch:
        first = keras.layers.BatchNormalization(name="first_bn")(first)
        first = keras.layers.ReLU(name="first")(first)
    down = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="down")(x)
    up = keras.layers.UpSampling2D(2, name="up")(down)
    merged = keras.layers.Concatenate(name="cat")([first, up])
    return keras.Model(x, keras.layers.Conv2D(2, 1, name="head")(merged))


quantize_model(model(fused_first_branch=False))
try:
    quantize_model(model(fused_first_branch=True))
    error = None
except RuntimeError as caught:
    error = str(caught)
print(json.dumps({"error": error}))
"""


def test_a_concatenate_whose_inputs_tfmot_reorders_is_refused_by_name():
    result = run_python(CODE, flavour="tf_keras")
    assert result.returncode == 0, result.stderr[-3000:]
    assert last_json_line(result.stdout)["error"] == (
        "TF-MOT reordered the inputs of Concatenate 'cat' during QAT (first, up -> up, first): express it "
        "without the ordered merge, e.g. a conv over the concatenation as a sum of per-input convs"
    )
