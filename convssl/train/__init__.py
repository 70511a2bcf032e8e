"""The training loop: optimisation, checkpoints, exact resume, distributed runs."""
