"""Training: presets, losses, checkpoints and the training loop."""
