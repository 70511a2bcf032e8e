"""`convssl pretrain`: self-supervised pretraining on prepared dialogue shards.

Launch one process directly, or several with
`torchrun --nproc_per_node=N -m convssl pretrain ...` (DistributedDataParallel).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

from convssl.cli import UserError, require_given
from convssl.cli._config import add_config_options, config_values

HELP = "pretrain an encoder or decoder with self-supervised objectives (MLM, CLM, NUP, contrastive)"
LOG = logging.getLogger("convssl.pretrain")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        help="YAML config or preset name in convssl/configs (e.g. pretrain_mini_mlm); "
        "with --resume and no --config, RUN/config.yaml is reused",
    )
    parser.add_argument("--data", dest="cfg.data", help="prepared data folder (tokenizer/ + shards/); same as data=DIR")
    parser.add_argument("--out", metavar="RUN", help="run folder for checkpoints, logs and final/ (required)")
    parser.add_argument(
        "--resume", action="store_true", help="continue from the latest checkpoint in RUN (exactly, same losses)"
    )
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. lr=3e-4 model.dropout=0")
    add_config_options(parser, "convssl.train.config:PretrainConfig", "pretrain")


def build_config(args: argparse.Namespace):
    """Preset or file (with --resume and no --config, RUN/config.yaml), then `key=value` overrides, then the options."""
    from convssl.config import load_config
    from convssl.train.config import PretrainConfig

    config_path, upgrade = args.config, None
    if config_path is None and args.resume and args.out and (Path(args.out) / "config.yaml").exists():
        config_path, upgrade = str(Path(args.out) / "config.yaml"), _saved_by_an_older_version
    return load_config(PretrainConfig, config_path, args.overrides, config_values(args), upgrade=upgrade)


def _saved_by_an_older_version(saved: dict) -> dict:
    """A run's own config.yaml, as the current version reads it: older versions saved every
    objective's settings, which a config given by hand may not hold."""
    from convssl.pretext.base import without_foreign_settings

    if isinstance(saved.get("objectives"), list):
        objectives = [without_foreign_settings(o) if isinstance(o, dict) else o for o in saved["objectives"]]
        saved = {**saved, "objectives": objectives}
    return saved


def run(args: argparse.Namespace) -> int:
    from convssl.train.loop import INTERRUPTED_EXIT, TrainingInterrupted, pretrain

    config = build_config(args)
    require_given((args.out, "no run folder given: pass --out RUN"),
                  (config.data, "no data given: pass --data DIR (a folder written by `convssl prepare`)"))
    if not Path(config.data).is_dir():
        raise UserError(f"data folder {config.data} does not exist; create it with `convssl prepare`")
    is_main = int(os.environ.get("RANK", "0")) == 0
    run_dir = Path(args.out)
    if is_main:
        print(f"convssl pretrain: run folder {run_dir} (log {run_dir / 'pretrain.log'})", flush=True)
    try:
        result = pretrain(config, run_dir, resume=args.resume)
    except TrainingInterrupted as exc:
        if is_main:
            print(f"interrupted after step {exc.step}; checkpoint saved in {exc.checkpoint}")
            print(f"continue with: convssl pretrain --out {run_dir} --resume")
        return INTERRUPTED_EXIT
    except FileExistsError as exc:
        raise UserError(str(exc)) from exc
    finally:
        from convssl.train.distributed import shutdown_if_initialised

        shutdown_if_initialised()
    if is_main:
        summary = {
            "steps": result.steps,
            "tokens_seen": result.tokens_seen,
            "final": str(result.final_dir),
            "best": result.best,
            "stopped_early": result.stopped_early,
            "last": {k: v for k, v in result.last_metrics.items() if k.startswith(("loss", "val"))},
        }
        print(json.dumps(summary, indent=2))
    return 0
