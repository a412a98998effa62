"""Flags and config files onto the settings dataclasses: argparse with one --flag per field,
TOML files and shipped presets, and the one-line error for a bad flag."""

from __future__ import annotations

import argparse
import sys
import tomllib
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any

from bertsent.config import ALIASES, TrainConfig, base_type, flag_name, from_mapping, suggest
from bertsent.errors import fail


def _optional(kind: type) -> Any:
    """'none' (or nothing) means "not set" for an optional number; text flags (run names,
    paths) are taken literally, so `--run-name none` names a run "none"."""
    if kind is str:
        return str

    def parse(text: str) -> Any:
        return None if text.lower() in ("none", "") else kind(text)

    parse.__name__ = kind.__name__
    return parse


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line on stderr and exit 2 (no usage dump), with a
    "did you mean" for a near miss or a Trainer argument name."""

    def __init__(self, *args: Any, known: list[str] = (), **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.known = list(known)

    def error(self, message: str) -> typing.NoReturn:
        if message.startswith("unrecognized arguments:"):
            flags = [a for a in message.split(":", 1)[1].split() if a.startswith("--")]
            message += "".join(suggest(f.split("=")[0], self.known) for f in flags[:1])
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _help(f: Any) -> str:
    """The field's help with its default, unless the help already says it."""
    text = f.metadata.get("help", "")
    text = text if "default" in text else f"{text} (default: {f.default})"
    return text.replace("%", "%%")  # argparse formats help with %


def build_parser(cls: type = TrainConfig, prog: str = "bertsent.train") -> argparse.ArgumentParser:
    """One --flag per dataclass field (and its old name, if it had one); defaults are
    SUPPRESSed so only given flags override."""
    parser = OneLineParser(prog=prog, description=cls.__doc__, known=[f.name for f in fields(cls)],
                           argument_default=argparse.SUPPRESS, allow_abbrev=False)
    shipped = f", or a shipped preset: {', '.join(preset_names())}" if cls is TrainConfig else ""
    parser.add_argument("--config",
                        help=f"TOML file whose keys are field names (CLI wins){shipped}")
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        flags = [f"--{flag_name(f.name)}"] + [f"--{flag_name(old)}" for old, new in
                                               ALIASES.items() if new == f.name]
        kind, optional = base_type(hints[f.name])
        choices = f.metadata.get("choices")
        if kind is bool:
            parser.add_argument(*flags, action=argparse.BooleanOptionalAction, help=_help(f))
        elif "parse" in f.metadata:  # a field with its own parser (e.g. a list as 'a,b')
            parser.add_argument(*flags, type=f.metadata["parse"], help=_help(f),
                                metavar=f.name.upper())
        else:
            parser.add_argument(*flags, type=_optional(kind) if optional else kind,
                                choices=choices, help=_help(f), dest=f.name,
                                metavar="{" + ",".join(choices) + "}" if choices else
                                f.name.upper())
    return parser


PRESETS = Path(__file__).parent / "configs"  # named settings shipped with bertsent


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS.glob("*.toml"))


def load_toml(path: str, prog: str = "bertsent.train") -> dict[str, Any]:
    """A TOML file, or the name of a shipped preset (`--config imdb-full`): the preset unless
    a file of that name exists (a folder of that name in the working directory is no file).
    The presets are training settings: another entry point refuses their names."""
    if path in preset_names() and not Path(path).is_file():  # a folder ./imdb-full/ too
        if prog != "bertsent.train":
            fail(f"--config {path} is a bertsent.train preset (training settings), not "
                 f"{prog}'s: pass a TOML file of {prog} settings, or the flags themselves")
        path = str(PRESETS / f"{path}.toml")
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        fail(f"config file {path} does not exist: pass an existing TOML file to --config, or "
             f"a shipped preset ({', '.join(preset_names()) or 'none'})")
    except UnicodeDecodeError:
        fail(f"config file {path} is not UTF-8 text: re-encode it as UTF-8")
    except tomllib.TOMLDecodeError as exc:
        fail(f"config file {path} is not valid TOML ({exc}): fix the syntax")
    except OSError as exc:
        fail(f"config file {path} cannot be read ({exc.strerror}): check the path")


def parse_overrides(argv: list[str] | None = None, cls: type = TrainConfig,
                    prog: str = "bertsent.train") -> dict[str, Any]:
    """Only the settings the user gave: CLI flags over an optional TOML file (checked)."""
    argv = sys.argv[1:] if argv is None else argv
    given = {a.split("=", 1)[0] for a in argv[:argv.index("--") if "--" in argv else None]}
    for old, new in ALIASES.items():  # argparse would keep whichever came last
        if {f"--{flag_name(old)}", f"--{flag_name(new)}"} <= given:
            fail(f"--{flag_name(old)} and --{flag_name(new)} are the same setting: keep one of "
                 "them")
    args = vars(build_parser(cls, prog).parse_args(argv))
    config_path = args.pop("config", None)
    file_values = load_toml(config_path, prog) if config_path else {}
    from_mapping(file_values, cls, source=f"config file {config_path}")  # the file's keys alone
    return {**{k.replace("-", "_"): v for k, v in file_values.items()}, **args}


def parse_config(argv: list[str] | None = None) -> TrainConfig:
    """CLI flags over an optional TOML file over dataclass defaults."""
    return from_mapping(parse_overrides(argv)).checked()
