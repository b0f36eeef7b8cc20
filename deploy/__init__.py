"""Artifact -> Lava process graph -> closed-loop episodes, metrics and the CLI."""
