"""Bit widths of signed fixed-point quantities: the one helper every side uses."""
from __future__ import annotations


def int_max(bits: int) -> int:
    """The largest value of a signed `bits`-bit integer, 2**(bits - 1) - 1."""
    return (1 << (bits - 1)) - 1
