"""Export trained models to TFLite (float32, float16, dynamic range, int8, EdgeTPU-ready int8),
embed the model contract, and validate each conversion against the float Keras model."""
