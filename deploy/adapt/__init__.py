"""Host-side readout training of a deployed network, in the loop (`lavaloop adapt`).

readout.py: the readout's float parameters and their fixed-point form on the chip.
rules.py: the trainers (td, reinforce, distill) and their configuration.
chips.py: the network running an episode at a time, on Lava or the emulator.
protocol.py: the resumable adaptation run.
"""
