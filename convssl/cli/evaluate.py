"""`convssl evaluate`: score models on intent, OOS, response-selection and perplexity tasks."""

from __future__ import annotations

import argparse
import logging

from convssl.cli._config import add_config_options, config_values

HELP = "evaluate models beside TF-IDF and random-init baselines (intent, OOS, response selection, perplexity)"

LOG = logging.getLogger("convssl.evaluate")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", action="append", dest="cfg.models", metavar="PATH",
                        help="model to evaluate: a model folder, a convssl run folder (uses final/) or an installed "
                             "model package; repeatable")
    parser.add_argument("--task", action="append", dest="cfg.tasks", metavar="KIND:PATH",
                        help="intent:PATH, oos:PATH, response:PATH or ppl:PATH; repeatable")
    parser.add_argument("--baseline", action="append", dest="cfg.baselines", metavar="PATH",
                        help="another model folder to show as a baseline; repeatable")
    parser.add_argument("--no-random-baseline", action="store_const", const=False, dest="cfg.random_baseline",
                        help="skip the randomly initialised copy of each model's architecture")
    parser.add_argument("--no-tfidf", action="store_const", const=False, dest="cfg.tfidf_baseline",
                        help="skip the TF-IDF + logistic regression baseline")
    parser.add_argument("--modes", dest="cfg.intent.modes",
                        help="intent modes, comma-separated: probe,knn,centroid,kshot (frozen), finetune, setfit, "
                             "finetune_kshot (trained)")
    parser.add_argument("--pooling", choices=["mean", "cls"], dest="cfg.pooling", help="embedding pooling (default mean)")
    parser.add_argument("--max-train", type=int, dest="cfg.max_train", metavar="N",
                        help="seeded stratified subsample of train")
    parser.add_argument("--max-test", type=int, dest="cfg.max_test", metavar="N",
                        help="seeded stratified subsample of test/val")
    parser.add_argument("--seeds", type=int, dest="cfg.intent.seeds", help="k-shot seeds (default 3)")
    parser.add_argument("--bf16", action="store_const", const=True, dest="cfg.bf16",
                        help="embed under bf16 autocast (faster on AVX-512 BF16 CPUs)")
    parser.add_argument("--cache", dest="cfg.cache_dir", metavar="DIR",
                        help="keep embeddings on disk here so that reruns skip the forward passes")
    parser.add_argument("--no-plots", action="store_const", const=False, dest="cfg.plots",
                        help="write report.json/report.md only")
    parser.add_argument("--out", dest="cfg.out", metavar="DIR", help="output folder (default runs/evaluate)")
    parser.add_argument("--config", default=None, metavar="FILE",
                        help="YAML config or preset name in convssl/configs (e.g. evaluate_quick)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. intent.C=1.0")
    add_config_options(parser, "convssl.evaluate.config:EvaluateConfig", "evaluate")


def build_config(args: argparse.Namespace):
    """Preset or file, then `key=value` overrides, then the options (which win)."""
    from convssl.config import load_config
    from convssl.evaluate.config import EvaluateConfig

    return load_config(EvaluateConfig, args.config, args.overrides, config_values(args))


def run(args: argparse.Namespace) -> int:
    from convssl.cli import UserError, require_given
    from convssl.evaluate.runner import evaluate
    from convssl.evaluate.tasks import TaskError
    from convssl.models.reference import ModelFolderError

    config = build_config(args)
    require_given((config.models, "no model given: pass --model PATH (a convssl run folder or a local HF model folder)"),
                  (config.tasks, "no task given: pass --task intent:PATH (or oos:, response:, ppl:)"))
    try:
        evaluate(config, config.out)
    except (TaskError, ModelFolderError) as exc:
        raise UserError(str(exc)) from exc
    print(f"report: {config.out}/report.md")
    return 0
