"""Downstream models: intent classifiers with out-of-scope rejection, few-shot learning."""
