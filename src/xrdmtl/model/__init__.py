"""The model: input preprocessing, networks, model files, losses, calibration and metrics."""
