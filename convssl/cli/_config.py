"""What every verb does with its config: `--help` lists the keys, `--print-config` shows the
resolved config, `--list-presets` names the presets, and options map onto keys.

An option that sets a config key is declared with `dest="cfg.KEY"` (for example
`parser.add_argument("--out", dest="cfg.out")`): `config_values` collects the ones the user
gave, and `load_config` applies them after the file and the `key=value` overrides, through the
same typed checks. No verb copies flags onto the config by hand.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

import yaml

PREFIX = "cfg."


def _config_class(spec: str) -> type:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def add_config_options(parser: argparse.ArgumentParser, config_class: str, verb: str) -> None:
    """`--print-config`, `--list-presets`, and the config keys at the end of `--help`.

    `config_class` is "module:Class", imported only when help is printed: the verbs' configs
    pull in torch, which `convssl --help` and `convssl prepare` must not wait for."""
    from convssl.config import config_help, list_presets

    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config (presets, file, overrides and options applied) and exit")

    class ListPresets(argparse.Action):
        def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
            print("\n".join(list_presets(verb)) or f"no presets for {verb}")
            parser.exit(0)

    parser.add_argument("--list-presets", nargs=0, action=ListPresets,
                        help=f"list the presets of convssl/configs that --config takes by name ({verb}*) and exit")
    plain_help = parser.format_help
    parser.formatter_class = argparse.RawDescriptionHelpFormatter

    def format_help() -> str:
        return plain_help() + "\n" + config_help(_config_class(config_class)) + "\n"

    parser.format_help = format_help  # type: ignore[method-assign]


def config_values(args: argparse.Namespace) -> dict[str, Any]:
    """The config keys set by options the user gave (`dest="cfg.KEY"`, default None)."""
    return {dest[len(PREFIX):]: value for dest, value in vars(args).items()
            if dest.startswith(PREFIX) and value is not None}


def print_config(config: Any) -> None:
    """The resolved config as YAML, secrets (keys named like a token or password) masked."""
    from convssl.config import to_dict

    def masked(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: "***" if v and any(s in k for s in ("token", "password", "secret")) else masked(v)
                    for k, v in node.items()}
        return [masked(v) for v in node] if isinstance(node, list) else node

    sys.stdout.write(yaml.safe_dump(masked(to_dict(config)), sort_keys=False))
