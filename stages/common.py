"""What every stage command shares: options built from its params sections, errors, the summary.

`stage_command(cfg="quantize")` turns a function

    def quantize(cfg: QuantizeConfig, model: Annotated[Path, typer.Option(...)] = Path(...)): ...

into a Typer command whose options are the function's own (the file paths) plus `--params`
plus one named flag per field of each section (`--clip-sigmas`). A flag left out takes the
params file's value, so params.yaml stays the one source of every default; `--help` shows
the values of ./params.yaml. The sections are validated (golf.params) before any work.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import sys
import time
import typing
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

from golf.errors import GolfError
from golf.io.metrics import timings_path, write_stage_metrics
from golf.params import choices_text, field_docs, load_section, option_type, read_params

DEFAULT_PARAMS = Path("params.yaml")


def _current_values() -> dict[str, Any]:
    """./params.yaml for the help text; nothing if it is absent or broken (the run will say)."""
    try:
        return read_params(DEFAULT_PARAMS)
    except GolfError:
        return {}


def _show(value: Any) -> str | bool:
    if value is None:
        return False
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value)) or "(empty)"
    return str(value)


def _field_option(section: str, cls: type, field: dataclasses.Field, current: dict) -> inspect.Parameter:
    hint = typing.get_type_hints(cls)[field.name]
    flag = "--" + field.name.replace("_", "-")
    value = current.get(section, {}).get(field.name) if isinstance(current.get(section), dict) else None
    if hint is bool:
        decls = [f"{flag}/--no-{flag[2:]}"]
        shown = (flag if value else f"--no-{flag[2:]}") if isinstance(value, bool) else False
    else:
        decls = [flag]
        shown = _show(value)
    option = typer.Option(*decls, help=field_docs(cls).get(field.name, "") + choices_text(hint), show_default=shown,
                          rich_help_panel=f"{section} (params.yaml)")
    return inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY, default=None,
                             annotation=Annotated[Optional[option_type(hint)], option])


def stage_command(**sections: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Decorator: parameter name -> params section, e.g. `stage_command(model_cfg="model", cfg="train")`."""

    def wrap(fn: Callable[..., None]) -> Callable[..., None]:
        hints = typing.get_type_hints(fn, include_extras=True)
        classes = {p: (sec, hints[p]) for p, sec in sections.items()}
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=hints[p.name])
               for p in inspect.signature(fn).parameters.values() if p.name not in sections]
        current = _current_values()
        field_params: list[inspect.Parameter] = []
        for sec, cls in classes.values():
            for f in dataclasses.fields(cls):
                if f.name in {p.name for p in own + field_params} | {"params"}:
                    raise TypeError(f"{fn.__name__}: option name {f.name!r} is used twice")
                field_params.append(_field_option(sec, cls, f, current))
        params_param = inspect.Parameter(
            "params", inspect.Parameter.KEYWORD_ONLY, default=DEFAULT_PARAMS,
            annotation=Annotated[Path, typer.Option(
                "--params", help="Params file whose sections give every default (flags override).")])

        def command(**kwargs: Any) -> None:
            params_path = kwargs.pop("params")
            try:
                cfgs = {}
                for pname, (sec, cls) in classes.items():
                    names = {f.name for f in dataclasses.fields(cls)}
                    overrides = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
                    overrides = {k: v for k, v in overrides.items() if v is not None}
                    cfgs[pname] = load_section(params_path, sec, cls, overrides)
                fn(**cfgs, **kwargs)
            except GolfError as e:
                typer.secho(f"golf {fn.__name__.replace('_', '-')}: error: {e}", err=True, fg="red")
                raise typer.Exit(1) from None

        all_params = own + [params_param] + field_params
        command.__signature__ = inspect.Signature(all_params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in all_params}
        command.__name__ = fn.__name__
        command.__doc__ = fn.__doc__
        command.__sections__ = {sec: cls for sec, cls in classes.values()}  # type: ignore[attr-defined]
        return command

    return wrap


def not_built(name: str, issue: str) -> Callable[[], None]:
    """A command for a stage whose issue is still open: it says so and exits non-zero."""

    def command() -> None:
        typer.secho(f"golf {name}: not built yet (see {issue})", err=True, fg="yellow")
        raise typer.Exit(3)

    command.__name__ = name.replace("-", "_")
    command.__doc__ = f"Not built yet ({issue})."
    return command


class Timer:
    """Wall-clock seconds since creation (`wall_s` in every stage's metrics)."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    @property
    def s(self) -> float:
        return round(time.perf_counter() - self.t0, 3)


def finish(stage: str, metrics_path: Path, values: dict[str, Any]) -> None:
    """Write metrics/<stage>.json (+ timings/) and print the same numbers as the stage's closing summary."""
    write_stage_metrics(metrics_path, stage, values)
    width = max(map(len, values), default=0)
    lines = [f"  {k:<{width}}  {_fmt(v)}" for k, v in values.items()]
    print(f"golf {stage.replace('_', '-')}: done -> {metrics_path}, {timings_path(metrics_path)}", *lines,
          sep="\n", file=sys.stderr)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.6g}" if abs(v) < 1e6 else f"{v:,.0f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return json.dumps(v) if not isinstance(v, str) else v
