"""Evaluation of representations on downstream tasks, beside baselines."""
