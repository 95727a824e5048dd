"""A keras-tuner search for either backend: the search space, the engine (oracles, tuner), the search, its trials."""
