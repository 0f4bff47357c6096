"""Dataclass configs from TOML + command-line flags: torch-free, so that `--help` answers at once."""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any

import tomllib


def _parse_field(field_type: Any, text: str) -> Any:
    """Parses a command-line value for a dataclass field of type bool/int/float/str/dict/optional."""
    origin = typing.get_origin(field_type)
    if origin in (typing.Union, types.UnionType):
        if text.lower() in ("none", "null", ""):
            return None
        field_type = next(arg for arg in typing.get_args(field_type) if arg is not type(None))
        origin = typing.get_origin(field_type)
    if field_type is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise argparse.ArgumentTypeError(f"not a boolean: {text!r}")
    if field_type in (dict, list) or origin in (dict, list):
        return json.loads(text)
    return field_type(text)


def parse_config(config_cls: type, argv: list[str] | None, description: str = "") -> Any:
    """Config = dataclass defaults <- `--config file.toml` <- `--field value` flags."""
    hints = typing.get_type_hints(config_cls)
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", type=Path, help="TOML file whose keys are the fields below")
    for field in dataclasses.fields(config_cls):
        parser.add_argument(
            f"--{field.name.replace('_', '-')}",
            dest=field.name,
            type=lambda text, t=hints[field.name]: _parse_field(t, text),
            default=argparse.SUPPRESS,
            help=f"(default: {field.default if field.default is not dataclasses.MISSING else field.default_factory()})",
        )
    args = vars(parser.parse_args(argv))
    values: dict[str, Any] = {}
    config_file = args.pop("config", None)
    if config_file is not None:
        values.update(tomllib.loads(config_file.read_text()))
        unknown = set(values) - {f.name for f in dataclasses.fields(config_cls)}
        if unknown:
            parser.error(f"{config_file}: unknown keys {sorted(unknown)}")
    values.update(args)
    return config_cls(**values)
