"""Synthetic training data: batched 1D patterns and simulated 2D detector frames."""
