"""Keras 3 side: models built from lab.specs layer specs, and the Keras backend (keras_models.training).
TensorFlow, Keras and keras-tuner are imported through core.frameworks, which says why."""
