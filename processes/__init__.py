"""Lava Processes and their ProcessModels, and the integer arithmetic they share.

Knows nothing of PyTorch, chip profiles or deployment. `dynamics` (the arithmetic) imports
numpy and numba only; the Process folders import Lava (through `lava_import`).
"""
