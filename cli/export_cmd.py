"""`klm export`: a run or checkpoint -> SavedModel, Transformers, ONNX, LiteRT or GGUF (`klm.export.formats`).

Its options are `klm.export.options.ExportOptions`'s fields (`klm.cli.options.options_from`),
checked there.
"""

import json
import os

import click

from klm.cli.common import backend_option, user_errors
from klm.cli.options import given_values, options_from
from klm.export.options import ExportOptions


@click.command(
    help=(
        "Export RUN (a finished `klm pretrain`/`klm finetune` folder) as a TF SavedModel in OUT/<version>/, "
        "the layout `tensorflow_model_server --model_base_path=OUT` serves. The export runs under "
        "TensorFlow whatever backend trained the run, then reloads the SavedModel in a TensorFlow-only "
        "process, checks every signature against the Keras model and prints them."
    )
)
@click.argument("run_dir", metavar="RUN", type=click.Path())
@click.argument("out_dir", metavar="OUT", type=click.Path())
@options_from(ExportOptions)
@backend_option
@click.pass_context
@user_errors
def export(ctx, run_dir, out_dir, backend, **flags):
    from klm.errors import ConfigError

    try:
        options = ExportOptions(source=run_dir, out_dir=out_dir, backend=backend, **given_values(ctx, flags))
    except ConfigError as e:
        raise click.BadParameter(str(e)) from None
    from klm.export.formats import export_with

    result = export_with(options)
    if options.json:
        click.echo(json.dumps(result, indent=2))
    elif options.format == "hf":
        from klm.export.hf_format import format_result as format_hf_result

        click.echo(format_hf_result(result))
    elif options.format == "savedmodel":
        click.echo(format_result(result))
    else:
        click.echo(format_file_result(result))


def format_file_result(result):
    """Human-readable summary of an onnx / litert / gguf export."""
    source = result.get("source") or {}
    files = ", ".join(f"{name} ({size / 1e6:.2f} MB)" for name, size in result["files"].items())
    what = result["format"] + (f" {result['gguf_type']}" if result.get("gguf_type") else "")
    lines = [f"Exported {source.get('name', '')} ({source.get('architecture', '?')}) as {what} to {result['path']}"]
    lines.append(f"Files: {files}")
    runtime = {"onnx": "ONNX Runtime", "litert": "the LiteRT interpreter", "gguf": "llama-cpp-python"}[result["format"]]
    if result["verified"]:
        line = (
            f"Verified in a fresh process importing only {runtime} (no klm, Keras, TensorFlow, JAX or PyTorch): "
            f"max |{result['format']} - klm| {result['max_abs_diff']:.2g} (<= {result['tolerance']:.2g})"
        )
        if "greedy_match" in result:
            line += "; greedy text " + ("equals" if result["greedy_match"] else "DIFFERS from") + " klm generate's"
        if result.get("tokenizer_ids_match"):
            line += "; tokenizer ids match klm's"
        lines.append(line)
    else:
        lines.append("Not verified (--no-verify).")
    tokenizer = result.get("tokenizer") or {}
    if tokenizer.get("reason"):
        lines.append(f"No tokenizer.json: {tokenizer['reason']}.")
    return "\n".join(lines)


def format_result(result):
    """Human-readable summary of `export_run`'s result."""
    lines = [
        (
            f"Exported {result['run_dir']} ({result['task']}, {result['checkpoint']}, "
            f"{result['tokenizer']} tokenizer) to {result['path']}"
        ),
    ]
    if result["custom_ops"]:
        lines.append(f"Custom ops (serve with tensorflow-text ops): {', '.join(result['custom_ops'])}")
    else:
        lines.append("Ops: core TensorFlow only" + (" (--portable)" if result["portable"] else ""))
    if result["verified"]:
        diffs = ", ".join(f"{k} {v:.2g}" for k, v in result["max_abs_diff"].items())
        lines.append(
            "Verified in a TensorFlow-only process (no klm, no Keras"
            + ("" if result["portable"] else "; tensorflow-text op libraries loaded")
            + f"): max |SavedModel - Keras|: {diffs}"
        )
    else:
        lines.append("Not verified (--no-verify).")
    lines += ["", result["signatures_text"], ""]
    base = os.path.abspath(result["out_dir"])
    name = os.path.basename(os.path.normpath(base)) or "model"
    lines += [
        "Serve it with:",
        f"  tensorflow_model_server --rest_api_port=8501 --model_name={name} --model_base_path={base}",
    ]
    return "\n".join(lines)
