"""Options and error handling shared by the klm commands."""

import functools
import json
import sys

import click

from klm import backend as backend_lib


def _apply_backend(ctx, param, value):
    # Runs while click parses flags, before the command body imports Keras.
    try:
        return backend_lib.use_backend(value)
    except backend_lib.BackendError as e:
        raise click.BadParameter(str(e), ctx=ctx, param=param) from None


backend_option = click.option(
    "--backend",
    type=click.Choice(["tensorflow", "jax", "torch"]),
    default=None,
    callback=_apply_backend,
    is_eager=True,
    expose_value=True,
    help="Keras backend. Default: $KERAS_BACKEND, then Keras's config file, then tensorflow.",
)


def load_config_file(path):
    """Reads a JSON or YAML config file (for `--config`) into a dict."""
    try:
        with open(path, encoding="utf-8-sig") as f:  # a BOM (Windows editors) is not part of the text
            text = f.read()
    except OSError as e:
        raise click.BadParameter(f"Cannot read config file: {e}. Received: --config={path!r}") from None
    try:
        if path.endswith((".yaml", ".yml")):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as e:  # noqa: BLE001 - any parse error is a bad flag value
        raise click.BadParameter(f"Cannot parse config file {path}: {e}. Received: --config={path!r}") from None
    if not isinstance(data, dict):
        raise click.BadParameter(
            f"Expected a mapping of option names to values in {path}. Received: {type(data).__name__}"
        )
    return {k.replace("-", "_"): v for k, v in data.items()}


def user_errors(func):
    """Turns klm's user-facing exceptions into a clean message and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from klm.errors import KlmError

        try:
            return func(*args, **kwargs)
        except KlmError as e:
            click.echo(f"Error: {e}", err=True)
            sys.exit(2)

    return wrapper
