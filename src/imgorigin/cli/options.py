"""Command options generated from a settings dataclass, so the CLI and the library cannot drift apart.

Each field becomes ``--kebab-case`` with the field's type, default and ``metadata["help"]``; the command
receives all of them as one instance of the dataclass.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer

from imgorigin.errors import UsageError

Command = TypeVar("Command", bound=Callable[..., Any])


def option_name(field_name: str) -> str:
    """The command-line spelling of a settings field: ``refine_steps`` → ``--refine-steps``."""
    return "--" + field_name.replace("_", "-")


def settings_options(cls: type, into: str, panel: str | None = None) -> Callable[[Command], Command]:
    """Decorate a command so that every field of dataclass ``cls`` is one of its options, passed as ``into``.

    A field the command declares itself as a parameter of the same name (e.g. ``seed``) stays that single
    option: the command receives its value and so does the settings object. An invalid combination of values
    (the dataclass raises ValueError) is a usage error naming the rule broken. ``panel`` groups the generated
    options under their own heading in ``--help``.
    """
    hints = typing.get_type_hints(cls)

    def decorate(command: Command) -> Command:
        signature = inspect.signature(command, eval_str=True)
        own = [p for name, p in signature.parameters.items() if name != into]
        declared = {p.name for p in own}
        generated = [_parameter(f, hints[f.name], panel) for f in dataclasses.fields(cls) if f.name not in declared]
        names = [f.name for f in dataclasses.fields(cls)]

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> Any:
            values = {name: kwargs[name] for name in names}
            for parameter in generated:
                del kwargs[parameter.name]
            try:
                settings = cls(**values)
            except ValueError as exc:
                raise UsageError(f"invalid settings: {exc}") from None
            return command(**kwargs, **{into: settings})

        parameters = [*own, *generated]
        wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
        return wrapper  # type: ignore[return-value]

    return decorate


def _parameter(field: dataclasses.Field, annotation: Any, panel: str | None) -> inspect.Parameter:
    """A keyword-only Typer option for one dataclass field."""
    if field.default is dataclasses.MISSING or "help" not in field.metadata:
        raise TypeError(f"settings field {field.name!r} needs a default and metadata['help'] to become an option")
    option = typer.Option(option_name(field.name), help=field.metadata["help"], rich_help_panel=panel)
    return inspect.Parameter(
        field.name, inspect.Parameter.KEYWORD_ONLY, default=field.default, annotation=Annotated[annotation, option]
    )


def detail_level(value: float) -> float | None:
    """``--detail-alpha`` as the verifier takes it: 0 turns the check off (None)."""
    return value or None


DetailAlphaOpt = Annotated[
    float,
    typer.Option(
        "--detail-alpha",
        min=0.0,
        max=0.5,
        help="Images with less fine detail than the model's own at this level (resized down and back, blurred: "
        "processing the file does not show) get 'inconclusive' (smoother_than_model); 0 turns the check off.",
    ),
]


def open_unit_interval(value: float) -> float:
    """Option callback: a level such as alpha lies strictly between 0 and 1 (a usage error otherwise)."""
    if not 0 < value < 1:
        raise typer.BadParameter(f"must be strictly between 0 and 1, got {value}")
    return value
