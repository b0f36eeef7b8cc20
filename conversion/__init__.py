"""Checkpoint -> canonical network -> calibrated, quantized artifact. Knows PyTorch, not Lava."""
