"""Settings and their command line: one ExperimentSettings for both backends, the device plan, the machine."""
