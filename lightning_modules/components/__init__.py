"""Plain torch networks and their parts, no Lightning."""
from lightning_modules.components.network import build_network, count_params

__all__ = ["build_network", "count_params"]
