"""Keras networks and their parts, no training loop."""
from keras_models.components.network import build_network, count_params

__all__ = ["build_network", "count_params"]
