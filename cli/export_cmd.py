"""`klm export`: a run or checkpoint -> SavedModel, Transformers, ONNX, LiteRT or GGUF (`klm.export.formats`)."""

import json
import os

import click

from klm.cli.common import backend_option, user_errors


def _positive_version(ctx, param, value):
    if value is not None and value < 1:
        raise click.BadParameter(f"Expected a version >= 1. Received: --version={value}", ctx=ctx, param=param)
    return value


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
@click.option(
    "--version",
    "version",
    type=int,
    default=None,
    callback=_positive_version,
    help="Version folder to write (an integer >= 1). Default: one more than the highest version in OUT, 1 "
    "for a new OUT. An existing version is never overwritten.",
)
@click.option(
    "--portable",
    is_flag=True,
    help="Require a graph of core TensorFlow ops only, for stock TF Serving without the tensorflow-text "
    "ops (word and byte tokenizers).",
)
@click.option(
    "--checkpoint",
    type=click.Choice(["best", "last"]),
    default="best",
    show_default=True,
    help="Which checkpoint of the run to export (best falls back to last).",
)
@click.option(
    "--verify/--no-verify",
    default=True,
    show_default=True,
    help="Reload the SavedModel in a TensorFlow-only process and compare every signature with the Keras "
    "model before publishing the version.",
)
@click.option(
    "--max-new-tokens",
    "verify_max_new_tokens",
    type=int,
    default=8,
    show_default=True,
    help="Tokens generated per prompt when checking a language model's generate signatures.",
)
@click.option(
    "--format",
    "export_format",
    type=click.Choice(["savedmodel", "hf", "onnx", "litert", "gguf"]),
    default="savedmodel",
    show_default=True,
    help="savedmodel: a TF SavedModel version for TF Serving. hf: a Hugging Face Transformers folder OUT "
    "(config.json, model.safetensors, tokenizer files) for a causal LM whose architecture keras-hub can export "
    "(GPT-2, Llama 3, Mistral, Qwen 2, Gemma). onnx: OUT/model.onnx (token_ids + padding_mask in, logits or a "
    "classifier's probabilities out, dynamic batch and sequence) + tokenizer.json, checked in ONNX Runtime. "
    "litert: OUT/model.tflite (fixed shape, --backend tensorflow), checked in the LiteRT interpreter. gguf: "
    "OUT/model.gguf for llama.cpp (GPT-2, Llama, Qwen 3), checked in llama-cpp-python. For every format but "
    "savedmodel RUN may also be any checkpoint name (keras-hub preset, hf://ORG/NAME, a local folder).",
)
@click.option(
    "--gguf-type",
    type=click.Choice(["f32", "f16", "q8_0"]),
    default=None,
    help="--format gguf: the weights' type. Default: the model's own precision (f32 for a float32 model).",
)
@click.option(
    "--litert-sequence-length",
    "sequence_length",
    type=click.IntRange(min=1),
    default=None,
    help="--format litert: the fixed sequence length of the model's inputs. Default: the run's seq_len, else 128.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@backend_option
@user_errors
def export(
    run_dir,
    out_dir,
    version,
    portable,
    checkpoint,
    verify,
    verify_max_new_tokens,
    export_format,
    gguf_type,
    sequence_length,
    as_json,
    backend,
):
    from klm.errors import ConfigError
    from klm.export.config import ExportConfig
    from klm.export.formats import export_to

    if verify_max_new_tokens < 1:
        raise click.BadParameter(
            f"Expected a positive number of tokens. Received: --max-new-tokens={verify_max_new_tokens}"
        )
    if export_format != "savedmodel" and (version is not None or portable):
        raise click.UsageError("--version and --portable apply to --format savedmodel only.")
    if gguf_type is not None and export_format != "gguf":
        raise click.UsageError("--gguf-type applies to --format gguf only.")
    if sequence_length is not None and export_format != "litert":
        raise click.UsageError("--litert-sequence-length applies to --format litert only.")
    options = dict(checkpoint=checkpoint, verify=verify, max_new_tokens=verify_max_new_tokens, backend=backend)
    if export_format == "savedmodel":
        options.update(version=version, portable=portable)
        try:  # bad flag values are usage errors (the export validates the same config again)
            ExportConfig(run_dir=run_dir, out_dir=out_dir, version=version, portable=portable, checkpoint=checkpoint)
        except ConfigError as e:
            raise click.UsageError(str(e)) from None
    result = export_to(export_format, run_dir, out_dir, gguf_type=gguf_type, sequence_length=sequence_length, **options)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    elif export_format == "hf":
        from klm.export.hf_format import format_result as format_hf_result

        click.echo(format_hf_result(result))
    elif export_format == "savedmodel":
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
