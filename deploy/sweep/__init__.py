"""`lavaloop sweep`: a grid of conversions and runs (or dreaming runs) from one TOML spec, as Ray
tasks, resumable cell by cell (spec -> store -> runner -> report)."""
