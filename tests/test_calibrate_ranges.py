"""QAT's activation ranges from the calibration batches: the mean of each batch's min/max, or the
min/max over all of them as post-training int8 calibrates."""

import numpy as np
import pytest
from conftest import last_json_line, run_python

pytestmark = pytest.mark.slow

CODE = """
import json
import numpy as np
from vision_core.backend import keras
from vision_core.quant.qat import calibrate_ranges, quantize_model

inputs = keras.Input((2, 2, 1), name="image")
model = keras.Model(inputs, keras.layers.Conv2D(1, 1, use_bias=False, kernel_initializer="ones", name="conv")(inputs))
batches = [np.full((1, 2, 2, 1), value, np.float32) for value in (-1.0, 3.0)]
batches[0][0, 0, 0, 0], batches[1][0, 0, 0, 0] = 2.0, -4.0  # batch min/max: (-1, 2) and (-4, 3)
ranges = {}
for statistic in ("batch_mean", "min_max"):
    qat = quantize_model(model)
    calibrate_ranges(qat, model, batches, statistic)
    ranges[statistic] = sorted(float(v.numpy()) for v in qat.get_layer("quant_conv").weights
                               if "post_activation_m" in v.name)
tanh = keras.Model(
    inputs, keras.layers.Conv2D(1, 1, use_bias=False, kernel_initializer="ones", activation="tanh", name="conv")(inputs)
)
pre_activation = {}
for statistic in ("batch_mean", "min_max"):
    qat = quantize_model(tanh)
    calibrate_ranges(qat, tanh, batches, statistic)
    pre_activation[statistic] = sorted(float(v.numpy()) for v in qat.get_layer("quant_conv").weights
                                       if "pre_activation_m" in v.name)
try:
    calibrate_ranges(quantize_model(model), model, batches, "percentile")
    error = None
except ValueError as caught:
    error = str(caught)
print(json.dumps({"ranges": ranges, "pre_activation": pre_activation, "error": error}))
"""


def test_ranges_are_the_mean_of_the_batch_extremes_or_the_extremes_of_all_batches():
    result = run_python(CODE, flavour="tf_keras")
    assert result.returncode == 0, result.stderr[-3000:]
    out = last_json_line(result.stdout)
    np.testing.assert_allclose(out["ranges"]["batch_mean"], [-2.5, 2.5])
    np.testing.assert_allclose(out["ranges"]["min_max"], [-4.0, 3.0])
    # a conv's fused tanh is quantized on its input: the range of the conv's output before the tanh
    np.testing.assert_allclose(out["pre_activation"]["batch_mean"], [-2.5, 2.5])
    np.testing.assert_allclose(out["pre_activation"]["min_max"], [-4.0, 3.0])
    assert out["error"] == "range statistic 'percentile': expected one of ('batch_mean', 'min_max')"
