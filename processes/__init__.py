"""Lava Processes and their ProcessModels. Knows nothing of PyTorch or chip profiles."""
