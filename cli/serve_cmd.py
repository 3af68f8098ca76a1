"""`klm serve`."""

import click

from klm.cli.common import backend_option, user_errors
from klm.cli.eval_cmd import CHECKPOINT_HELP, precision_option
from klm.cli.options import given_values, options_from
from klm.serve.config import ServeConfig


@click.command(
    help="Serve a language model behind the OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions, "
    "/v1/models, streaming), with a chat page at /. Concurrent requests are decoded together in one batch. "
    "SFT runs answer chat requests with their template, as `klm generate` does. Stops, after answering the "
    "requests in flight, on Ctrl-C or SIGTERM. Needs pip install 'klm[serve]'. " + CHECKPOINT_HELP
)
@click.argument("run_dir", metavar="RUN", type=click.Path())
@options_from(ServeConfig)
@precision_option
@backend_option
@click.pass_context
@user_errors
def serve(ctx, run_dir, precision, backend, **flags):
    from klm.errors import ConfigError

    try:
        config = ServeConfig(run_dir=run_dir, precision=precision, backend=backend, **given_values(ctx, flags))
    except ConfigError as e:
        raise click.BadParameter(str(e)) from None
    from klm.serve import serve as run

    run(config)
