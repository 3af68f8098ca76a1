"""`klm export`: a run folder -> a TF SavedModel version for TensorFlow Serving."""

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
    type=click.Choice(["savedmodel", "hf"]),
    default="savedmodel",
    show_default=True,
    help="savedmodel: a TF SavedModel version for TF Serving. hf: a Hugging Face Transformers folder OUT "
    "(config.json, model.safetensors, tokenizer files) for a causal LM whose architecture keras-hub can export "
    "(GPT-2, Llama 3, Mistral, Qwen 2, Gemma); RUN may then also be any checkpoint name (keras-hub preset, "
    "hf://ORG/NAME, a local folder). Verified by loading it with transformers + torch in a fresh process.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@backend_option
@user_errors
def export(
    run_dir, out_dir, version, portable, checkpoint, verify, verify_max_new_tokens, export_format, as_json, backend
):
    from klm.errors import ConfigError
    from klm.export import ExportConfig, export_run

    if export_format == "hf":
        if version is not None or portable:
            raise click.UsageError("--version and --portable apply to --format savedmodel only.")
        from klm.pretrained.hf_export import export_checkpoint_hf
        from klm.pretrained.hf_export import format_result as format_hf_result

        result = export_checkpoint_hf(run_dir, out_dir, verify=verify, which=checkpoint)
        click.echo(json.dumps(result, indent=2) if as_json else format_hf_result(result))
        return

    if verify_max_new_tokens < 1:
        raise click.BadParameter(
            f"Expected a positive number of tokens. Received: --max-new-tokens={verify_max_new_tokens}"
        )
    try:
        config = ExportConfig(
            run_dir=run_dir,
            out_dir=out_dir,
            version=version,
            portable=portable,
            checkpoint=checkpoint,
            verify=verify,
            verify_max_new_tokens=verify_max_new_tokens,
            backend=backend,
        )
    except ConfigError as e:
        raise click.UsageError(str(e)) from None
    result = export_run(config)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(format_result(result))


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
