"""Import Lava safely; every Process module imports this before Lava.

Importing Lava sets multiprocessing's start method to "fork" and fails if the method is
already fixed, as it is after any tqdm bar (e.g. `convert`'s calibration). This clears a
start method that is already "fork", then imports Lava.
"""
import multiprocessing

if multiprocessing.get_start_method(allow_none=True) == "fork":
    multiprocessing.set_start_method(None, force=True)
import lava.magma.core.process.process  # noqa: E402,F401  (sets the start method)
