"""What a chip backend needs to host one run of the dreaming agent."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lavaloop.deploy.dreaming.network import ChipNetwork


@dataclass
class ChipSetup:
    network: ChipNetwork
    env_fn: Callable
    env_seed: int
    noise_seed: int
    noise_sigma: float
    table: np.ndarray            # place-cell phase increments per byte value (256, cells)
    action_increment: int
    phase_one: int
    window: int                  # chip time steps per agent step
    noop_steps: int
    ram_index: tuple
    action_map: tuple
    restart: bool = False        # generators restart at every window (the authors' re-uploaded patterns)
