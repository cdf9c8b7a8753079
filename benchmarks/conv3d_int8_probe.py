"""Does TFLite convert a Keras ``Conv3D`` to an int8 ``CONV_3D``? The op audit of a full-int8 conversion.

One ``Conv3D`` (3x3x3, 4 -> 8 channels, 8x16x16 input) converted with ``TFLITE_BUILTINS_INT8`` and int8 input and
output; writes every op with its tensor dtypes to ``benchmarks/results/conv3d_int8_probe.json``. Run:
``python benchmarks/conv3d_int8_probe.py``. (The suite's ``convert`` is not used: the probe's input is 5D.)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from machine import machine_info

from tflite.audit import audit_ops, float_ops
from vision_core.backend import keras, tf

OUT = Path(__file__).parent / "results" / "conv3d_int8_probe.json"


def main() -> None:
    inputs = keras.Input((8, 16, 16, 4), batch_size=1)
    model = keras.Model(inputs, keras.layers.Conv3D(8, 3, padding="same", name="conv3d")(inputs))
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(0)
    volumes = [rng.normal(size=(1, 8, 16, 16, 4)).astype(np.float32) for _ in range(8)]
    converter.representative_dataset = lambda: ([volume] for volume in volumes)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    records = audit_ops(converter.convert())  # converts without an error
    ops = [{"op": r.op, "inputs": list(r.input_dtypes), "outputs": list(r.output_dtypes)} for r in records]
    result = {"ops": ops, "float_ops": [r.op for r in float_ops(records)], "machine": machine_info()}
    OUT.write_text(json.dumps(result, indent=2))
    for op in ops:
        print(f"{op['op']:<12} in={','.join(op['inputs'])} out={','.join(op['outputs'])}")
    print("float ops:", ", ".join(result["float_ops"]) or "none")


if __name__ == "__main__":
    main()
