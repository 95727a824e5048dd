"""Callbacks for both backends. Import the backend-specific module you need
(callbacks.lightning_recorder or callbacks.keras_recorder): importing this package imports
neither framework."""
