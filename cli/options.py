"""click options built from the config dataclasses, and the one test of "did the user set this option?".

A config field declared with `klm.config.option(default, help, choices=...)`
is a command-line option: `options_from(PretrainConfig)` adds a click
option for each such field, with its flag, type, choices and help, the help
ending with the field's default. So each option's default, choices and help
are defined once, in the dataclass, and the dataclass's `__post_init__`
checks the values (errors name the flag).

The click default of these options is `None`: an option the user leaves out
takes the dataclass default (or the `--config` file's value). `given(ctx,
name)` (click's parameter source) is how every command tells an option the
user set from one left out.
"""

import dataclasses
import typing

import click
from click.core import ParameterSource

from klm.config import DataOptions, TrainingOptions, field_spec, flag_of

_GIVEN = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT, ParameterSource.PROMPT)
# Option groups shared by several commands: listed after a command's own options.
_SHARED = (TrainingOptions, DataOptions)


def given(ctx, name):
    """Whether the user set parameter `name` (on the command line or in the environment)."""
    return ctx.get_parameter_source(name) in _GIVEN


def given_values(ctx, values):
    """The entries of `values` (parameter name -> value) that the user set."""
    return {name: value for name, value in values.items() if given(ctx, name)}


def _shared_names(cls):
    """Names of the fields `cls` inherits from the shared option groups, in the groups' order."""
    return [f.name for group in _SHARED if issubclass(cls, group) for f in dataclasses.fields(group)]


def cli_fields(cls):
    """Names of `cls`'s fields that are command-line options: the command's own, then the shared groups'.

    A class that inherits no shared group lists its fields in declaration order.
    """
    names = {
        f.name
        for f in dataclasses.fields(cls)
        if field_spec(cls, f.name).get("help") and field_spec(cls, f.name).get("cli", True)
    }
    shared = _shared_names(cls)
    own = [f.name for f in dataclasses.fields(cls) if f.name in names and f.name not in shared]
    return own + [name for name in shared if name in names]


def options_from(config_cls, variant=None, exclude=(), parts=()):
    """A decorator adding a click option for each option field of `config_cls`.

    A field whose type is a list (`list | None`) becomes a repeatable option
    (`--valid a.txt --valid b.txt`); a flag `"--on/--off"` a two-way switch.

    Args:
        config_cls: the config dataclass the command builds.
        variant: `(label, cls)`: a second config class the command may build
            instead (`("SFT", SftConfig)` for `klm finetune --task sft`). Its
            own options are added too, their help starting with `label`, and
            a default that differs is shown as `Default: 32 (SFT: 16)`.
        exclude: field names that get no option.
        parts: further config classes that `config_cls` holds (`klm
            prepare`'s `CleaningConfig`): their option fields are options
            too, listed after `config_cls`'s own, their help as declared.
    """
    classes = [config_cls] + ([variant[1]] if variant else []) + list(parts)
    label = variant[0] if variant else None
    shared = {name for cls in classes for name in _shared_names(cls)}
    names = []
    for own in (True, False):  # every class's own options first, then the shared ones
        for cls in classes:
            names += [
                name
                for name in cli_fields(cls)
                if (name not in shared) == own and name not in names and name not in exclude
            ]

    def decorate(func):
        for name in reversed(names):
            func = _option(name, classes, label)(func)
        return func

    return decorate


def _option(name, classes, label):
    owners = [cls for cls in classes if name in {f.name for f in dataclasses.fields(cls)}]
    cls = owners[0]
    spec = field_spec(cls, name)
    field = {f.name: f for f in dataclasses.fields(cls)}[name]
    labelled = label is not None and cls is classes[1]
    help_text = f"{label}: {spec['help'][0].lower()}{spec['help'][1:]}" if labelled else spec["help"]
    defaults = [_default_text(owner, name) for owner in owners]
    if len(owners) == 2 and defaults[0] != defaults[1]:
        help_text += f" Default: {defaults[0] or 'none'} ({label}: {defaults[1] or 'none'})."
    elif defaults[0]:
        help_text += f" Default: {defaults[0]}."
    flag = spec.get("flag", flag_of(cls, name))
    kind = _base_type(field.type)
    if "/" in flag:
        return click.option(flag, name, default=None, help=help_text)
    if kind is bool:
        return click.option(flag, name, is_flag=True, default=None, help=help_text)
    if _is_list(field.type):
        return click.option(flag, name, multiple=True, default=None, help=help_text)
    click_type = click.Choice(list(spec["choices"])) if "choices" in spec else kind
    return click.option(flag, name, type=click_type, default=None, help=help_text)


def _is_list(annotation):
    """Whether a field of type `annotation` (`list`, `list[str]`, `list | None`) holds a list."""
    if annotation is list or typing.get_origin(annotation) is list:
        return True
    kinds = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    return any(kind is list or typing.get_origin(kind) is list for kind in kinds)


def _base_type(annotation):
    """`int` for `int` and `Optional[int]`; `str` for anything else that is not a plain scalar."""
    args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    kind = args[0] if args else annotation
    return kind if kind in (bool, int, float, str) else str


def _default_text(cls, name):
    """How the help states the default of field `name` of `cls`; `None`: nothing worth saying."""
    spec = field_spec(cls, name)
    default = {f.name: f for f in dataclasses.fields(cls)}[name].default
    if spec.get("default_help"):
        return spec["default_help"]
    if default is None or default is False or default == "":
        return None
    return str(default)
