"""Neuromorphic dreaming: a fixed on-chip agent whose readouts learn Pong on the host,
from real games and from dreams of a learned world model (PAPERS.md, section 3)."""
