"""`convssl serve`: the chat API, agent console and feedback store in one process."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from convssl.cli import UserError, require_given
from convssl.cli._config import add_config_options, config_values

HELP = "serve the chatbot: chat API and page, escalation to agents, agent console, feedback"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config file or preset name (e.g. serve_demo)")
    parser.add_argument("--host", dest="cfg.host", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, dest="cfg.port", help="port (default 8000)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides, e.g. classifier_path=runs/intent escalation.low_confidence_turns=1")
    add_config_options(parser, "convssl.serve.config:ServeConfig", "serve")


def build_config(args: argparse.Namespace):
    """Preset or file, then `key=value` overrides, then the options (which win)."""
    from convssl.config import load_config
    from convssl.serve.config import ServeConfig

    return load_config(ServeConfig, args.config, args.overrides, config_values(args))


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from convssl.serve.analysis import Brain
    from convssl.serve.app import create_app
    from convssl.serve.server import uvicorn_config

    config = build_config(args)
    require_given((config.classifier_path,
                   "no intent classifier: pass classifier_path=DIR (a `convssl finetune` output folder)"))
    if not Path(config.classifier_path).exists():
        raise UserError(f"classifier folder {config.classifier_path} does not exist: train one with "
                        f"`convssl finetune ... --out {config.classifier_path}` (for serve_demo: `make demo`)")
    logging.getLogger("convssl").info("loading models (classifier %s)", config.classifier_path)
    try:
        brain = Brain.load(config)
    except (FileNotFoundError, ValueError) as exc:
        raise UserError(str(exc)) from exc
    app = create_app(config, brain)
    print(f"convssl serve: chat on http://{config.host}:{config.port}/ , agent console on "
          f"http://{config.host}:{config.port}/agent , database {config.db_path}", flush=True)
    uvicorn.Server(uvicorn_config(app, config.host, config.port, config.log_level)).run()
    return 0
