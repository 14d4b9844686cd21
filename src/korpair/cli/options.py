"""The command line's side of the config: options generated from ``TrainConfig``, messages written in flags.

``korpair train`` has one option per config key, named after it (``--optim.lr``),
typed and helped from the field and grouped by section; the short spellings users
type (``--lr``, ``-o``) are declared beside the field they belong to
(``json_schema_extra={"cli_aliases": [...]}`` in ``korpair.config``). The options
become ``key=value`` overrides, so the CLI and ``korpair.train(config, overrides)``
build the same config.

Library messages name Python arguments and config keys (``overwrite=True``,
``corpus.encoding='cp949'``); ``in_flags`` rewrites them in the flags of the
command that is running.

>>> flags = {"corpus.encoding": ("--corpus.encoding", None, False), "overwrite": ("--overwrite", None, True)}
>>> in_flags("pass encoding='cp949' (config: corpus.encoding='cp949'), or overwrite=True", flags)
'pass --corpus.encoding cp949, or --overwrite'
"""

from __future__ import annotations

import inspect
import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, get_args, get_origin

import typer
from typer.core import TyperCommand

from korpair.config import TrainConfig

# What each name a message may use is called on one command: its flag, its negative flag, whether it is a flag.
Flags = dict[str, tuple[str, Optional[str], bool]]


def config_parameters() -> list[inspect.Parameter]:
    """One keyword parameter per config key, annotated for typer: ``--section.key``, its aliases and help."""
    defaults = TrainConfig().to_dict()
    params = []
    for section, section_field in TrainConfig.model_fields.items():
        model = section_field.annotation
        summary = inspect.getdoc(model).splitlines()[0].rstrip(".")
        panel = f"{section} ({summary[0].lower()}{summary[1:]})"
        for name, field in model.model_fields.items():
            key, default = f"{section}.{name}", defaults[section][name]
            aliases = (field.json_schema_extra or {}).get("cli_aliases", [])
            shown = default if isinstance(default, str) else json.dumps(default, ensure_ascii=False)
            common = dict(help=f"{field.description}  [default: {shown}]", rich_help_panel=panel)
            if field.annotation is bool:
                kind, option = Optional[bool], typer.Option(f"--{key}/--no-{key}", *aliases, **common)
            else:  # passed on as text: TrainConfig checks it, with the same errors as in a config file
                kind, option = Optional[str], typer.Option(f"--{key}", *aliases, metavar=_metavar(field.annotation),
                                                           **common)
            params.append(inspect.Parameter(key.replace(".", "__"), inspect.Parameter.KEYWORD_ONLY, default=None,
                                            annotation=Annotated[kind, option]))
    return params


def with_config_options(command: Callable) -> Callable:
    """Decorator: replace a command's ``**options`` with ``config_parameters()``, for typer to read."""
    signature = inspect.signature(command, eval_str=True)
    params = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD] + config_parameters()
    command.__signature__ = signature.replace(parameters=params)
    command.__annotations__ = {p.name: p.annotation for p in params}
    return command


class ConfigCommand(TyperCommand):
    """A command whose help lists its own options, then the generated ones section by section.

    Plain lists, not rich tables: option names as long as ``--trainer.accumulate_grad_batches`` stay whole
    on an 80-column terminal.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rich_markup_mode = None

    def format_options(self, ctx: Any, formatter: Any) -> None:
        sections: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record:
                title = "Arguments" if param.param_type_name == "argument" else param.rich_help_panel or "Options"
                sections.setdefault(title, []).append(record)
        for title, rows in sections.items():
            with formatter.section(title):
                formatter.write_dl(rows)


def overrides_from(options: dict[str, Any], set_: list[str]) -> list[str]:
    """The generated options that were given, as ``key=value`` overrides, then the ``--set`` ones."""
    given = [(name.replace("__", "."), value) for name, value in options.items() if value is not None]
    return [f"{key}={str(value).lower() if isinstance(value, bool) else value}" for key, value in given] + list(set_)


def _metavar(annotation: Any) -> str:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return "|".join(map(str, args))
    if origin is Annotated:
        return _metavar(args[0])
    if origin in (tuple, list):
        return "LIST"
    if args:  # a union such as int | str, or Path | None
        return "|".join([_metavar(a) for a in args if a is not type(None)] + ["null"] * (type(None) in args))
    return {int: "INT", float: "FLOAT", Path: "PATH"}.get(annotation, "TEXT")


def command_flags(command: Any) -> Flags:
    """The names a click/typer command has options for: Python argument names, or config keys for generated ones."""
    flags: Flags = {}
    for param in command.params:
        long = [opt for opt in param.opts if opt.startswith("--")]
        if long:
            negative = next((opt for opt in param.secondary_opts if opt.startswith("--")), None)
            flags[param.name.replace("__", ".")] = (long[0], negative, bool(getattr(param, "is_flag", False)))
    return flags


# A message that serves both Python arguments and a config writes ``encoding='cp949' (config: corpus.encoding=...)``.
_VALUE = r"(?:'[^']*'|[^\s,;()'\"`]*[^\s,;()'\"`.])?"
_NAME = r"[a-z_]+(?:\.[a-z_]+)?"
_HINTS = rf"{_NAME}={_VALUE}(?: / {_NAME}={_VALUE})*"
_EITHER = re.compile(rf"(?P<python>{_HINTS}) \(config: (?P<config>{_HINTS})\)")
# A dotted config key, or a Python argument followed by "=", but not inside a path, a quote or another word.
_HINT = re.compile(rf"(?<![\w./'\"`-])(?P<name>[a-z_]+\.[a-z_]+|[a-z_]+(?==))(?:=(?P<value>{_VALUE}))?")


def in_flags(message: str, flags: Flags) -> str:
    """``message`` with the names that ``flags`` knows written as flags (``overwrite=True`` -> ``--overwrite``).

    Of a ``python (config: keys)`` pair, the config keys are kept where the command has them all as options,
    else the Python arguments. Names the command has no option for are left as they are.
    """

    def either(match: re.Match) -> str:
        names = [hint.partition("=")[0] for hint in match["config"].split(" / ")]
        return match["config"] if all(name in flags for name in names) else match["python"]

    def flag(match: re.Match) -> str:
        if match["name"] not in flags:
            return match[0]
        name, negative, is_flag = flags[match["name"]]
        value = match["value"] or ""
        if value[:1] == "'" and " " not in value:
            value = value[1:-1]
        if is_flag:
            return name if value.lower() in ("", "true") else negative or match[0]
        return f"{name} {value}" if value else name

    return _HINT.sub(flag, _EITHER.sub(either, message))


class LogFlags(logging.Filter):
    """A log filter that writes korpair's log messages (e.g. the server's warnings) in the running command's flags."""

    def __init__(self) -> None:
        super().__init__()
        self.flags: Flags = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if self.flags and record.name.startswith("korpair"):
            record.msg, record.args = in_flags(record.getMessage(), self.flags), None
        return True
