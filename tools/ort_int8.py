"""onnxruntime's quantize_static in the scheme `actyolo val --int8` simulates: QDQ format,
per-channel int8 weights, uint8 activations, MinMax calibration, only Conv inputs
quantized (OpTypesToExcludeOutputQuantization: Conv). Shared by gen_int8_fixtures.py and
check_int8.py."""

from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)


class _Reader(CalibrationDataReader):
    def __init__(self, input_name, batches):
        self.input_name = input_name
        self.batches = iter(batches)

    def get_next(self):
        x = next(self.batches, None)
        return None if x is None else {self.input_name: x}


def quantize_like_val_int8(float_path, int8_path, input_name, batches):
    quantize_static(
        str(float_path),
        str(int8_path),
        _Reader(input_name, batches),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["Conv"],
        calibrate_method=CalibrationMethod.MinMax,
        extra_options={"OpTypesToExcludeOutputQuantization": ["Conv"]},
    )
