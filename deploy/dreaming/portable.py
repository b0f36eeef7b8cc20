"""Elementary functions that give the same bits on every x86 machine.

numpy computes float64 `exp` with its own AVX-512 code where the CPU has AVX-512 and with the
C library's elsewhere; the two differ in the last bit for some inputs. The dreaming runs
amplify one bit into a different curve within a few hundred games (docs/dreaming.md), so
their constants and their policy go through the C library's function on every machine.
"""
from __future__ import annotations

import math

import numpy as np

_exp = np.vectorize(math.exp, otypes=[np.float64])


def exp(x) -> np.ndarray:
    """Elementwise e**x in float64 through the C library (math.exp), on any CPU."""
    return _exp(np.asarray(x, np.float64))
