"""Fixtures of the evaluation tests: see slices.py."""

from tests.evaluate.slices import banking_slice, clinc_slice, constant_bert, sgd_slice, tiny_bert, tiny_gpt2  # noqa: F401
