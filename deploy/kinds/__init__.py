"""One deployment per network kind (registered in lavaloop.kinds): Lava graph, emulator, fidelity."""
