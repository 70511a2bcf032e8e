"""Pretext objectives: one module per objective behind the interface in `base.py`."""
