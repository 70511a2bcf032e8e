"""`convssl evaluate`: score models on intent, OOS, response-selection and perplexity tasks."""

from __future__ import annotations

import argparse
import logging

HELP = "evaluate models beside TF-IDF and random-init baselines (intent, OOS, response selection, perplexity)"

LOG = logging.getLogger("convssl.evaluate")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", action="append", default=None, metavar="PATH",
                        help="model to evaluate: a convssl run folder (uses final/) or a local HF folder; repeatable")
    parser.add_argument("--task", action="append", default=None, metavar="KIND:PATH",
                        help="intent:PATH, oos:PATH, response:PATH or ppl:PATH; repeatable")
    parser.add_argument("--baseline", action="append", default=None, metavar="PATH",
                        help="another model folder to show as a baseline; repeatable")
    parser.add_argument("--no-random-baseline", action="store_true",
                        help="skip the randomly initialised copy of each model's architecture")
    parser.add_argument("--no-tfidf", action="store_true", help="skip the TF-IDF + logistic regression baseline")
    parser.add_argument("--modes", default=None, help="intent modes, comma-separated: probe,knn,centroid,kshot (frozen), finetune, setfit, finetune_kshot (trained)")
    parser.add_argument("--pooling", choices=["mean", "cls"], default=None, help="embedding pooling (default mean)")
    parser.add_argument("--max-train", type=int, default=None, metavar="N", help="seeded stratified subsample of train")
    parser.add_argument("--max-test", type=int, default=None, metavar="N", help="seeded stratified subsample of test/val")
    parser.add_argument("--seeds", type=int, default=None, help="k-shot seeds (default 3)")
    parser.add_argument("--bf16", action="store_true", help="embed under bf16 autocast (faster on AVX-512 BF16 CPUs)")
    parser.add_argument("--cache", default=None, metavar="DIR",
                        help="keep embeddings on disk here so that reruns skip the forward passes")
    parser.add_argument("--no-plots", action="store_true", help="write report.json/report.md only")
    parser.add_argument("--out", default=None, metavar="DIR", help="output folder (default runs/evaluate)")
    parser.add_argument("--config", default=None, metavar="FILE",
                        help="YAML config or preset name in convssl/configs (e.g. evaluate_quick)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. intent.C=1.0")


def build_config(args: argparse.Namespace):
    from convssl.config import load_config
    from convssl.evaluate.config import EvaluateConfig

    config = load_config(EvaluateConfig, args.config, args.overrides)
    if args.model:
        config.models = list(args.model)
    if args.task:
        config.tasks = list(args.task)
    if args.baseline:
        config.baselines = list(args.baseline)
    if args.no_random_baseline:
        config.random_baseline = False
    if args.no_tfidf:
        config.tfidf_baseline = False
    if args.modes:
        config.intent.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if args.pooling:
        config.pooling = args.pooling
    if args.max_train is not None:
        config.max_train = args.max_train
    if args.max_test is not None:
        config.max_test = args.max_test
    if args.seeds is not None:
        config.intent.seeds = args.seeds
    if args.bf16:
        config.bf16 = True
    if args.cache:
        config.cache_dir = args.cache
    if args.no_plots:
        config.plots = False
    if args.out:
        config.out = args.out
    config.validate()
    return config


def run(args: argparse.Namespace) -> int:
    from convssl.cli import UserError
    from convssl.evaluate.runner import evaluate
    from convssl.evaluate.tasks import TaskError
    from convssl.models.reference import ModelFolderError
    from convssl.runs import prepare_run_dir

    config = build_config(args)
    if not config.models:
        raise UserError("no model given: pass --model PATH (a convssl run folder or a local HF model folder)")
    if not config.tasks:
        raise UserError("no task given: pass --task intent:PATH (or oos:, response:, ppl:)")
    out = prepare_run_dir(config.out, config)
    try:
        evaluate(config, out)
    except (TaskError, ModelFolderError) as exc:
        raise UserError(str(exc)) from exc
    print(f"report: {out / 'report.md'}")
    return 0
