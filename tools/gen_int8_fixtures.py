#!/usr/bin/env python3
"""Golden fixtures for the simulated INT8 quantization (`actyolo::ops::fake_quant`), from
onnxruntime's `quantize_static`: one Conv (3 -> 4 channels, 3x3, pad 1, with bias) in
ONNX, calibrated with MinMax on four inputs, quantized in QDQ format with per-channel
int8 weights and uint8 activations, only Conv inputs quantized:

    quantize_static(model, out, reader, quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    op_types_to_quantize=["Conv"], calibrate_method=CalibrationMethod.MinMax,
                    extra_options={"OpTypesToExcludeOutputQuantization": ["Conv"]})

and then run by onnxruntime on a fifth input (one channel of it beyond the calibrated
range, so saturation is exercised). The fixture holds the weights, bias, inputs, the input
scale and zero point onnxruntime chose, and its output.

Writes tests/fixtures/int8.json.

Rerun (from the repository root), in the reference environment (onnxruntime 1.32,
onnx 1.23):
    /tmp/ref/bin/python tools/gen_int8_fixtures.py
"""

import json
import os
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from ort_int8 import quantize_like_val_int8

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "int8.json")


def main():
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((4, 3, 3, 3)) * 0.3).astype(np.float32)
    w[2] *= 0.01  # a channel with small weights: its own scale matters
    b = (rng.standard_normal(4) * 0.5).astype(np.float32)
    calib = [(rng.standard_normal((1, 3, 6, 6)) * 1.5 + 0.4).astype(np.float32) for _ in range(4)]
    test = (rng.standard_normal((1, 3, 6, 6)) * 1.5 + 0.4).astype(np.float32)
    test[0, 1] *= 3.0
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1])],
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 6, 6])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with tempfile.TemporaryDirectory() as tmp:
        float_path = os.path.join(tmp, "conv.onnx")
        int8_path = os.path.join(tmp, "conv.int8.onnx")
        onnx.save(model, float_path)
        quantize_like_val_int8(float_path, int8_path, "x", calib)
        quantized = onnx.load(int8_path)
        inits = {t.name: numpy_helper.to_array(t) for t in quantized.graph.initializer}
        q_node = next(n for n in quantized.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "x")
        scale = float(inits[q_node.input[1]])
        zero_point = int(inits[q_node.input[2]])
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        session = ort.InferenceSession(int8_path, options, providers=["CPUExecutionProvider"])
        y = session.run(None, {"x": test})[0]
    with open(OUT, "w") as f:
        json.dump(
            {
                "weight": w.flatten().tolist(),
                "bias": b.tolist(),
                "calibration": [c.flatten().tolist() for c in calib],
                "input": test.flatten().tolist(),
                "input_scale": scale,
                "input_zero_point": zero_point,
                "output": y.flatten().tolist(),
            },
            f,
        )
    print(f"scale {scale} zero point {zero_point}; wrote {OUT}")


if __name__ == "__main__":
    main()
