"""Elementary functions whose bits do not depend on numpy's choice of SIMD code.

numpy computes float64 `exp` with its own AVX-512 code where the CPU has AVX-512 and with the
C library's elsewhere; the two differ in the last bit for some inputs. The dreaming runs
amplify one bit into a different curve within a few hundred games (docs/dreaming.md), so
their constants and their policy go through the C library's function on every machine: the
same bits wherever the C library's exp is the same (glibc on x86-64 also has FMA and non-FMA
builds of it, which are not guaranteed to agree in every last bit).
"""
from __future__ import annotations

import math

import numpy as np

_exp = np.vectorize(math.exp, otypes=[np.float64])
_log = np.vectorize(math.log, otypes=[np.float64])


def exp(x) -> np.ndarray:
    """Elementwise e**x in float64 through the C library (math.exp), whatever numpy's SIMD
    dispatch; like math.exp it raises OverflowError above ~709 (the dreaming code's arguments are <= 0)."""
    return _exp(np.asarray(x, np.float64))


def log(x) -> np.ndarray:
    """Elementwise natural logarithm in float64 through the C library (math.log); x must be > 0."""
    return _log(np.asarray(x, np.float64))
