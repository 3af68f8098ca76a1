"""`klm evaluate` and `klm generate`."""

import json
import sys

import click

from klm.cli.common import backend_option, user_errors


CHECKPOINT_HELP = (
    "RUN is a klm run folder, a keras-hub preset name (gpt2_base_en), kaggle://..., hf://ORG/NAME "
    "(hf://openai-community/gpt2), or a local keras-hub or Transformers folder (config.json + *.safetensors + "
    "tokenizer files)."
)
precision_option = click.option(
    "--precision",
    type=click.Choice(["float32", "bfloat16", "float16", "mixed_bfloat16", "mixed_float16"]),
    default=None,
    help="Pretrained checkpoints: load the weights in this dtype (bfloat16 halves the memory of big checkpoints). "
    "Default: float32. klm runs keep their own.",
)


@click.command(help="Perplexity (language model) or accuracy, macro-F1 and confusion matrix (classifier) of a run "
               "or pretrained checkpoint on a data file. For pretrained checkpoints perplexity follows Transformers' "
               "causal-LM loss: mean next-token NLL over windows of --seq-len tokens, no loss on each window's "
               "first token. " + CHECKPOINT_HELP)
@click.argument("run_dir", metavar="RUN", type=click.Path())
@click.option("--data", required=True, help="Text file (language model) or labelled file (classifier).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--batch-size", type=int, default=None, help="Evaluation batch size.")
@click.option("--text-field", default="text", show_default=True, help="Text field (JSONL) or column (CSV/TSV).")
@click.option("--label-field", default="label", show_default=True, help="Label field (JSONL) or column (CSV/TSV).")
@click.option("--seq-len", type=int, default=None,
              help="Pretrained checkpoints: window length in tokens. Default: the model's context, at most 1024.")
@click.option("--start-token/--no-start-token", "start_token", default=None,
              help="Pretrained checkpoints: start every document with the tokenizer's start token. Default: as the "
              "checkpoint's keras-hub preprocessor does (GPT-2, Llama 3: yes; Qwen: no).")
@precision_option
@backend_option
@user_errors
def evaluate(run_dir, data, as_json, batch_size, text_field, label_field, seq_len, start_token, precision, backend):
    from klm.evaluate import evaluate_run, format_result

    if batch_size is not None and batch_size < 1:
        raise click.BadParameter(f"Expected a positive batch size. Received: --batch-size={batch_size}")
    if seq_len is not None and seq_len < 2:
        raise click.BadParameter(f"Expected --seq-len >= 2. Received: --seq-len={seq_len}")
    result = evaluate_run(run_dir, data, backend=backend, batch_size=batch_size, text_field=text_field,
                          label_field=label_field, seq_len=seq_len, dtype=precision, add_start_token=start_token)
    click.echo(json.dumps(result, indent=2) if as_json else format_result(result))


@click.command(help="Generate text from a language-model run or pretrained checkpoint (streams tokens as they "
               "come; keras-hub samplers, key/value cache). " + CHECKPOINT_HELP)
@click.argument("run_dir", metavar="RUN", type=click.Path())
@click.option("--prompt", required=True, help="Text to continue.")
@click.option("--max-new-tokens", type=int, default=50, show_default=True, help="Tokens to generate at most.")
@click.option("--sampler", type=click.Choice(["greedy", "top_k", "top_p", "random"]), default="top_k", show_default=True,
              help="Decoding strategy.")
@click.option("--temperature", type=float, default=1.0, show_default=True, help="Softmax temperature.")
@click.option("--top-k", type=int, default=10, show_default=True, help="k for --sampler top_k.")
@click.option("--top-p", type=float, default=0.9, show_default=True, help="p for --sampler top_p.")
@click.option("--seed", type=int, default=None, help="Random seed for sampling.")
@precision_option
@backend_option
@user_errors
def generate(run_dir, prompt, max_new_tokens, sampler, temperature, top_k, top_p, seed, precision, backend):
    from klm.config import GenerateConfig
    from klm.errors import ConfigError

    try:
        config = GenerateConfig(run_dir=run_dir, prompt=prompt, max_new_tokens=max_new_tokens, sampler=sampler,
                                temperature=temperature, top_k=top_k, top_p=top_p, seed=seed, backend=backend)
    except ConfigError as e:
        raise click.UsageError(str(e))
    from klm.generate import generate_text
    from klm.pretrained import load_checkpoint

    if seed is not None:
        from klm.backend import set_seed

        set_seed(seed)
    run = load_checkpoint(run_dir, dtype=precision)
    if run.task != "causal_lm":
        raise ConfigError(
            f"Expected a language model to generate from; {run_dir} is a {run.task} run. Received: RUN={run_dir!r}"
        )
    click.echo(prompt + ("" if run.run is None else " "), nl=False)

    def stream(row, piece):
        click.echo(piece, nl=False)
        sys.stdout.flush()

    generate_text(run, [prompt], max_new_tokens=config.max_new_tokens, sampler=config.sampler,
                  temperature=config.temperature, top_k=config.top_k, top_p=config.top_p, seed=config.seed,
                  on_token=stream)
    click.echo("")
