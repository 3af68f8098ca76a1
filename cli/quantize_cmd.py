"""`klm quantize`: a language model -> a smaller run folder, measured before and after."""

import json

import click

from klm.cli.common import backend_option, user_errors
from klm.cli.options import given_values, options_from
from klm.quantize.config import QuantizeConfig


@click.command(
    help="Quantize the language model RUN with Keras's model.quantize and write the run folder OUT (which must not "
    "exist), read by evaluate, generate, export and finetune. Prints and records in OUT/summary.json the weight "
    "bytes, perplexity on --eval-data and greedy generation tokens/s, before and after. RUN is a klm run folder, a "
    "keras-hub preset name, hf://ORG/NAME or a local keras-hub or Transformers folder."
)
@click.argument("run_dir", metavar="RUN", type=click.Path())
@click.argument("out_dir", metavar="OUT", type=click.Path())
@options_from(QuantizeConfig)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@backend_option
@click.pass_context
@user_errors
def quantize(ctx, run_dir, out_dir, as_json, backend, **flags):
    from klm.errors import ConfigError

    try:
        config = QuantizeConfig(source=run_dir, out_dir=out_dir, backend=backend, **given_values(ctx, flags))
    except ConfigError as e:
        raise click.BadParameter(str(e)) from None
    from klm.quantize import quantize_run

    summary = quantize_run(config)
    click.echo(json.dumps(summary, indent=2) if as_json else format_summary(summary))


def format_summary(summary):
    """The before/after table `klm quantize` prints."""
    before, after = summary["before"], summary["after"]
    rows = [
        ("weight bytes", f"{before['weight_bytes']:,}", f"{after['weight_bytes']:,}", summary["weight_bytes_ratio"])
    ]
    if "perplexity" in after:
        rows.append(
            ("perplexity", f"{before['perplexity']:.3f}", f"{after['perplexity']:.3f}", summary["perplexity_ratio"])
        )
    if "generation" in after:
        rows.append(
            (
                "tokens/s (greedy)",
                f"{before['generation']['tokens_per_second']:.1f}",
                f"{after['generation']['tokens_per_second']:.1f}",
                summary["tokens_per_second_ratio"],
            )
        )
    quantization = summary["quantization"]
    lines = [
        f"mode {quantization['mode']} on {summary['backend']}: "
        + ", ".join(f"{n} layers {m}" for m, n in quantization["layer_modes"].items()),
        f"{'':20}{'before':>16}{'after':>16}{'ratio':>9}",
    ]
    lines += [f"{name:20}{b:>16}{a:>16}{ratio:>9.3f}" for name, b, a, ratio in rows]
    lines.append(f"(1-minute load average {summary['load_average_1min']:.1f})")
    if quantization["mode"] == "float8":
        lines.append("float8 is Keras's FP8 training scheme: kernels stay float32, so the model does not shrink.")
    return "\n".join(lines)
