"""Training of the segmenter and refiner (TensorFlow/Keras; installed with the `train` extra)."""
