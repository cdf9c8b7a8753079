"""Clip ops before a saturating uint8 output are dropped; the outputs stay within one step."""

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from tflite.audit import audit_ops
from tflite.model_file import pack_model
from tflite.runtime import TFLiteModel
from tflite.saturating_clips import drop_saturated_clips
from vision_core.backend import keras
from vision_core.quant.convert import convert


def _clipped_model():
    """A conv whose outputs are clipped to [0, 1], with values beyond both bounds."""
    inputs = keras.Input((12, 16, 1), batch_size=1)
    initializer = keras.initializers.RandomNormal(0.5, 0.5, seed=1)
    x = keras.layers.Conv2D(4, 3, padding="same", kernel_initializer=initializer)(inputs)
    return keras.Model(inputs, keras.layers.ReLU(max_value=1.0)(x))


def _int8(model, io_dtype: str) -> bytes:
    rng = np.random.default_rng(0)
    data = [rng.uniform(-1, 1, (1, 12, 16, 1)).astype(np.float32) for _ in range(4)]
    return convert(model, "int8", data, io_dtype=io_dtype)


def _ops(data: bytes) -> list[str]:
    return [record.op for record in audit_ops(data)]


def test_clip_to_the_uint8_output_range_is_dropped_and_outputs_stay_within_a_step():
    original = _int8(_clipped_model(), "uint8")
    assert _ops(original)[-3:] == ["MINIMUM", "RELU", "QUANTIZE"]
    dropped, count = drop_saturated_clips(original)
    assert count == 2
    assert _ops(dropped) == [op for op in _ops(original) if op not in ("MINIMUM", "RELU")]
    x = np.random.default_rng(2).integers(0, 256, (1, 12, 16, 1)).astype(np.uint8)
    before, after = TFLiteModel(original).run_raw(x), TFLiteModel(dropped).run_raw(x)
    for name, expected in before.items():
        assert expected.min() == 0 and expected.max() == 255  # both bounds clip some pixels
        assert np.abs(after[name].astype(int) - expected).max() <= 1


def test_a_clip_that_is_the_model_output_is_kept():
    original = _int8(_clipped_model(), "int8")
    dropped, count = drop_saturated_clips(original)
    assert (dropped, count) == (original, 0)


def test_a_clip_the_output_grid_reaches_past_is_kept():
    original = _int8(_clipped_model(), "uint8")
    model = schema.ModelT.InitFromPackedBuf(original, 0)
    subgraph = model.subgraphs[0]
    output = subgraph.tensors[subgraph.outputs[0]]
    output.quantization.scale = [output.quantization.scale[0] * 2]  # uint8 now spans [0, 2]: MINIMUM(x, 1) matters
    widened = pack_model(model)
    kept, count = drop_saturated_clips(widened)
    assert count == 1  # the RELU's lower bound 0 is still the grid's
    assert _ops(kept)[-2:] == ["MINIMUM", "QUANTIZE"]
