"""Export trained models to TFLite (float32, float16, dynamic range, int8, EdgeTPU-ready int8) or
ONNX (float, symmetric int8 Q/DQ for TensorRT), embed the model contract, and validate each
conversion against the float Keras model."""

# Here, not in quantize.py, so the CLI can offer the choices without importing TensorFlow.
TARGETS = ("float32", "float16", "dynamic", "int8", "edgetpu", "onnx", "onnx-int8")
ONNX_TARGETS = ("onnx", "onnx-int8")   # for onnxruntime and TensorRT (Jetson); the rest are TFLite
