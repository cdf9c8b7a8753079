"""QAT's LayerNorm subtracts the mean on the input's int8 grid: the converted SUB is exact.

Without it the converter gives ``x - mean`` a calibrated range of its own and rounds every
value again (one of the roundings that took trained RevCol-S's per-norm int8 error to 2.58 %,
where rounding the output alone gives 1.30 %). The QAT clone fake-quantizes the centred
tensor with its producer's range.
"""

import pytest
from conftest import last_json_line, run_python

pytestmark = pytest.mark.slow

CODE = """
import json
import numpy as np
from ai_edge_litert.interpreter import Interpreter
from vision_core.backend import keras
from vision_core.layers.normalization import LayerNorm
from vision_core.quant.convert import convert
from vision_core.quant.qat import calibrate_ranges, quantize_model, tie_same_scale_ranges

keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
inputs = keras.Input((8, 8, 3), name="image")
first = LayerNorm(name="input_norm")(inputs)  # a range of its own left DEQUANTIZE/QUANTIZE
x = keras.layers.Conv2D(32, 3, padding="same", name="conv")(first)
x = LayerNorm(name="ln")(x)
model = keras.Model(inputs, keras.layers.Conv2D(4, 1, name="head")(x))
model.get_layer("ln").set_weights([rng.uniform(0.5, 2, 32).astype("float32"), rng.normal(size=32).astype("float32")])
batches = [rng.normal(size=(8, 8, 8, 3)).astype(np.float32) for _ in range(4)]
qat = quantize_model(model)
calibrate_ranges(qat, model, batches)
tied = tie_same_scale_ranges(qat)
wrapper = qat.get_layer("quant_ln")
conv_range = [float(v.numpy()) for v in qat.get_layer("quant_conv").weights if "post_activation_m" in v.name]
flatbuffer = convert(qat, "int8", batches)
interpreter = Interpreter(model_content=flatbuffer, experimental_preserve_all_tensors=True)
interpreter.allocate_tensors()
tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
sub = next(op for op in interpreter._get_ops_details()
           if op["op_name"] == "SUB" and "quant_ln/" in tensors[op["outputs"][0]]["name"])
x_index, mean_index = sub["inputs"]
image = interpreter.get_input_details()[0]
scale, zero = image["quantization"]
interpreter.set_tensor(image["index"], np.clip(np.round(batches[0][:1] / scale + zero), -128, 127).astype(np.int8))
interpreter.invoke()
q = {i: interpreter.get_tensor(i).astype(np.int32) for i in (x_index, mean_index, sub["outputs"][0])}
zero_point = tensors[sub["outputs"][0]]["quantization"][1]
expected = np.clip(q[x_index] - q[mean_index] + zero_point, -128, 127)
print(json.dumps({
    "tied": tied,
    "gamma_kept": bool(np.array_equal(wrapper.layer.gamma.numpy(), model.get_layer("ln").gamma.numpy())),
    "centred_range": [float(wrapper.layer.centred_min.numpy()), float(wrapper.layer.centred_max.numpy())],
    "conv_range": sorted(conv_range),
    "scales": [tensors[i]["quantization"][0] for i in (x_index, mean_index, sub["outputs"][0])],
    "zero_points": [tensors[i]["quantization"][1] for i in (x_index, mean_index, sub["outputs"][0])],
    "exact": bool(np.array_equal(q[sub["outputs"][0]], expected)),
}))
"""


def test_the_qat_layer_norm_subtracts_the_mean_exactly_on_the_input_grid():
    result = run_python(CODE, flavour="tf_keras")
    assert result.returncode == 0, result.stderr[-3000:]
    out = last_json_line(result.stdout)
    assert out["tied"] == 2  # both norms: one after the model input, one after the conv
    assert out["gamma_kept"]
    assert out["centred_range"] == out["conv_range"]
    assert out["scales"][0] == out["scales"][1] == out["scales"][2]
    assert out["zero_points"][0] == out["zero_points"][1] == out["zero_points"][2]
    assert out["exact"]
