"""Typed run configuration: dataclasses loaded from YAML, overridden from the command line.

Every stage describes its settings as a dataclass so that a run's full configuration can be
validated up front, written beside the run and reloaded exactly (as torchtune and LitGPT do).
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import inspect
import textwrap
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override names an unknown field or a value of the wrong type."""


COMMAND_LINE = "command line"


def require(rules: typing.Iterable[tuple[bool, str]]) -> None:
    """Raise the message of the first rule that does not hold (a `validate()` lists its rules)."""
    for ok, message in rules:
        if not ok:
            raise ConfigError(message)


def did_you_mean(word: str, choices: typing.Iterable[str]) -> str:
    """"; did you mean X?" for the closest choice, or "" when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


# --------------------------------------------------------------------------- allowed ranges
@dataclasses.dataclass(frozen=True)
class Range:
    """The values a number setting may take, written as in maths: "> 0", ">= 2", "[0, 1)", "(0, 1]".

    Put it on the field's type (`max_pool: Annotated[int, Range(">= 2")] = 30000`, or one of the
    aliases below): loading a config checks it with a one-line error naming the key, `--help`
    prints it beside the type, and `check_values` checks a config built in code.
    """

    rule: str

    def __post_init__(self) -> None:
        self.holds(0)  # a malformed rule fails where it is written, at import

    def holds(self, value: float) -> bool:
        rule = self.rule.strip()
        if rule[0] in "[(" and rule[-1] in "])":
            low, high = (float(end) for end in rule[1:-1].split(","))
            above = low <= value if rule[0] == "[" else low < value
            return above and (value <= high if rule[-1] == "]" else value < high)
        op, bound = rule.split()
        compare = {">": float.__gt__, ">=": float.__ge__, "<": float.__lt__, "<=": float.__le__}[op]
        return compare(float(value), float(bound))

    def __str__(self) -> str:
        return f"in {self.rule}" if self.rule[0] in "[(" else self.rule


PositiveInt = Annotated[int, Range("> 0")]
NonNegativeInt = Annotated[int, Range(">= 0")]
PositiveFloat = Annotated[float, Range("> 0")]
Fraction = Annotated[float, Range("[0, 1]")]


def check_values(config: Any, prefix: str = "") -> None:
    """Check every field's `Range` and `Literal` choices in a config built in code (loading checks them)."""
    for name, annotation in _field_types(type(config)).items():
        value = getattr(config, name)
        if dataclasses.is_dataclass(value):
            check_values(value, f"{prefix}{name}.")
        elif _is_checked(annotation):
            _coerce(value, annotation, f"{prefix}{name}")


def _is_checked(annotation: Any) -> bool:
    return (typing.get_origin(annotation) in (Annotated, typing.Literal)
            or any(_is_checked(a) for a in typing.get_args(annotation)))


# --------------------------------------------------------------------------- field descriptions
@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """Each field's description: the string literal right below it (an attribute docstring, as
    litgpt and jsonargparse read them), from the class and its dataclass bases."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body  # type: ignore[attr-defined]
        for node, after in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                    and isinstance(after.value.value, str)):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs


@functools.cache
def section_doc(cls: type) -> str:
    """The first paragraph of a section class's own docstring: what its settings are about."""
    doc = cls.__dict__.get("__doc__") or ""
    if doc.startswith(f"{cls.__name__}("):  # the signature dataclass writes when there is none
        return ""
    return " ".join(inspect.cleandoc(doc).split("\n\n")[0].split())


def _type_name(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        return " ".join([_type_name(args[0]), *(str(a) for a in args[1:] if isinstance(a, Range))])
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is list:
        return f"list[{_type_name(args[0])}]"
    if annotation is type(None):
        return "None"
    if origin is typing.Literal:
        return "|".join(str(a) for a in args)
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__name__
    return str(annotation).replace("typing.", "").replace("NoneType", "None")


def describe_fields(cls: type, prefix: str = "") -> list[tuple[str, str, Any, str]]:
    """(dotted key, type, default, description) of every field; a nested section is a row of type
    "section", described by its field's docstring or else by its class's, and then its fields."""
    rows: list[tuple[str, str, Any, str]] = []
    defaults = cls()
    docs = field_docs(cls)
    for name, annotation in _field_types(cls).items():
        key = f"{prefix}{name}"
        if dataclasses.is_dataclass(annotation):
            rows.append((key, "section", None, docs.get(name) or section_doc(annotation)))
            rows.extend(describe_fields(annotation, f"{key}."))
            continue
        default = getattr(defaults, name)
        rows.append((key, _type_name(annotation), to_dict(default) if dataclasses.is_dataclass(default) or
                     isinstance(default, list) else default, docs.get(name, "")))
    return rows


def config_help(cls: type) -> str:
    """The `--help` epilog of a verb: every config key with its type, default and description."""
    lines = ["config keys (set in a YAML file or as key=value on the command line):"]
    for key, type_name, default, doc in describe_fields(cls):
        shown = "" if default in (None, "", [], {}) else f", default {default}"
        lines.append(f"  {key} ({type_name}{shown})")
        lines.extend(textwrap.wrap(doc, width=92, initial_indent="      ", subsequent_indent="      "))
    return "\n".join(lines) + "\n"


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls, include_extras=True)  # keeps each field's Range
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Turn YAML/CLI values into the annotated type, so that mistakes fail at load time."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin is Annotated:
        value = _coerce(value, args[0], where)
        for rule in args[1:]:
            if isinstance(rule, Range) and not rule.holds(value):
                raise ConfigError(f"{where}: must be {rule}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        if len(errors) == 1:  # `X | None`: X's own words (a range, a type) say more
            raise ConfigError(errors[0])
        raise ConfigError(f"{where}: {value!r} fits none of {_type_name(annotation)}")
    if dataclasses.is_dataclass(annotation):
        if isinstance(value, annotation):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(annotation, value, where)
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v for v in (s.strip() for s in value.split(",")) if v]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        vt = args[1] if len(args) == 2 else Any
        return {k: _coerce(v, vt, f"{where}.{k}") for k, v in value.items()}
    if origin is typing.Literal:
        if value not in args:
            hint = did_you_mean(value, args) if isinstance(value, str) else ""
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}{hint}")
        return value
    scalar = _SCALARS.get(annotation)
    return scalar(value, where) if scalar is not None else value


def _as_bool(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in {"true", "false", "1", "0", "yes", "no", "on", "off"}:
        return value.lower() in {"true", "1", "yes", "on"}
    raise ConfigError(f"{where}: expected true/false, got {value!r}")


def _as_int(value: Any, where: str) -> int:
    try:
        number: float | None = float(value)
    except (TypeError, ValueError):
        number = None
    if isinstance(value, bool) or number is None or not number.is_integer():  # true/false is no integer
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    return int(number)


def _as_float(value: Any, where: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: expected a number, got {value!r}") from exc


def _as_str(value: Any, where: str) -> str:
    if isinstance(value, (dict, list)):
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return str(value)


_SCALARS: dict[Any, Callable[[Any, str], Any]] = {bool: _as_bool, int: _as_int, float: _as_float, str: _as_str}


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build a config dataclass from a mapping, rejecting unknown keys with their full path."""
    types_ = _field_types(cls)
    unknown = sorted(set(data) - set(types_))
    if unknown:
        hint = did_you_mean(unknown[0], types_)
        raise ConfigError(f"{where}: unknown field(s) {unknown}{hint} (known: {', '.join(sorted(types_))})")
    check_keys = getattr(cls, "check_keys", None)
    if check_keys is not None:
        check_keys(data, where)
    kwargs = {name: _coerce(value, types_[name], f"{where}.{name}") for name, value in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except ValueError as exc:  # a __post_init__ check: keep its words, add where it came from
        raise ConfigError(f"{where}: {exc}") from exc


def to_dict(config: Any) -> Any:
    """Plain data of a config; a dataclass may leave out fields that do not apply
    (`saved_fields()`, e.g. the settings of other pretext objectives)."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        names = config.saved_fields() if hasattr(config, "saved_fields") else [f.name for f in dataclasses.fields(config)]
        return {name: to_dict(getattr(config, name)) for name in names}
    if isinstance(config, (list, tuple)):
        return [to_dict(v) for v in config]
    if isinstance(config, dict):
        return {k: to_dict(v) for k, v in config.items()}
    return config


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b.c=value` overrides; values are parsed as YAML scalars (so `lr=3e-4` is a float)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"{COMMAND_LINE}: override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw) if raw != "" else ""
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part} is not a section")
        node[parts[-1]] = value
    return data


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def list_presets(prefix: str = "") -> list[str]:
    """Names of the preset configs in convssl/configs (those of one verb when `prefix` is its name)."""
    return sorted(p.stem for p in PRESET_DIR.glob(f"{prefix}*.yaml"))


def preset_path(name: str | Path) -> Path | None:
    """A file shipped in convssl/configs, named with or without `.yaml` (`serve_demo`,
    `conversations/banking77`), or None."""
    for candidate in (PRESET_DIR / name, PRESET_DIR / f"{name}.yaml"):
        if candidate.is_file():
            return candidate
    return None


def resolve_config_path(path: str | Path) -> Path:
    """A YAML file, or a preset name of convssl/configs (with or without `.yaml`)."""
    path = Path(path)
    found = path if path.is_file() else preset_path(path)
    if found is not None:
        return found
    hint = did_you_mean(path.stem, list_presets())
    raise ConfigError(f"config file {path} does not exist and is no preset{hint} "
                      f"(presets: {', '.join(list_presets())})")


def read_yaml_mapping(path: Path, error: type[Exception] = ConfigError) -> dict[str, Any]:
    """The mapping at the top of a YAML file; `error` (one line naming the file) when it is not one."""
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(loaded, dict):
        raise error(f"{path}: top level must be a mapping")
    return loaded


def check_key(cls: type, key: str, where: str) -> None:
    """Fail when dotted `key` names no field of `cls`, saying where the key came from."""
    node: Any = cls
    parts = key.split(".")
    for depth, part in enumerate(parts):
        if not dataclasses.is_dataclass(node):
            return  # inside a dict or list field: its own type decides what is allowed
        types_ = _field_types(node)
        if part not in types_:
            section = ".".join(parts[:depth])
            known = ", ".join(sorted(types_))
            raise ConfigError(f"{where}: unknown key {key}{did_you_mean(part, types_)} "
                              f"(known{' in ' + section if section else ''}: {known})")
        node = types_[part]


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None,
                values: dict[str, Any] | None = None,
                upgrade: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> T:
    """Defaults of `cls`, then the YAML file or preset (if any), then `key=value` overrides, then
    `values` (command-line options mapped to their keys, such as `--out` to `out`); later ones win.

    An unknown key is blamed on where it was written: the file, or the command line. `upgrade`
    rewrites the file's mapping first (a run folder's config.yaml saved by an older version)."""
    data: dict[str, Any] = {}  # what is not given keeps the dataclass default, nested sections too
    where = cls.__name__
    if path is not None:
        path = resolve_config_path(path)
        where = str(path)
        read = read_yaml_mapping(path)
        data = _merge(data, upgrade(read) if upgrade is not None else read)
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"{COMMAND_LINE}: {item!r} must look like key=value (e.g. seed=1)")
    given = [item.split("=", 1)[0].strip() for item in overrides or []] + list(values or {})
    for key, item in zip(given, [*(overrides or []), *(values or {})]):
        check_key(cls, key, f"{COMMAND_LINE}: {item}")
    data = apply_overrides(data, list(overrides or []))
    for key, value in (values or {}).items():
        set_key(data, key, value)
    try:
        return from_dict(cls, data, where=where)
    except ConfigError as exc:  # a bad value given on the command line is blamed on it
        message = str(exc)
        for key in given:
            if message.startswith((f"{where}.{key}:", f"{where}.{key}[")):
                raise ConfigError(f"{COMMAND_LINE}: {key}{message[len(where) + 1 + len(key):]}") from exc
        raise


def set_key(data: dict[str, Any], key: str, value: Any) -> None:
    """Set dotted `key` in nested mappings."""
    *sections, last = key.split(".")
    node = data
    for part in sections:
        node = node.setdefault(part, {})
    node[last] = value


def save_config(config: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False), encoding="utf-8")


PRESET_DIR = Path(__file__).resolve().parent / "configs"
