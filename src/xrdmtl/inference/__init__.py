"""Inference: the batched predictor, its explanations, and parallel prediction over files."""
