"""Training on synthetic patterns, and fine-tuning on labeled measured patterns."""
