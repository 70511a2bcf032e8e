"""Experiment tracking, model registry and lineage on MLflow.

Every command that trains or measures (`prepare`, `pretrain`, `evaluate`, `finetune`) is wrapped
by `convssl.tracking.command.tracked` at the CLI dispatcher: the verbs themselves know nothing
about MLflow. A run is recorded from the files the verb writes into its output folder
(config.yaml, metrics.jsonl, report/summary/metrics JSON, plots), so the training step never
waits for the tracking store, and the same recorder replays a run later when the store was
unreachable (`convssl tracking sync RUN`).

mlflow is imported lazily (it costs seconds) and only in a background thread at start-up.
"""
