"""`klm evaluate` and `klm generate`."""

import json
import sys

import click

from klm.cli.common import backend_option, user_errors
from klm.cli.options import given_values, options_from
from klm.config import GenerateConfig

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


@click.command(
    help="Perplexity (language model) or accuracy, macro-F1 and confusion matrix (classifier) of a run "
    "or pretrained checkpoint on a data file. For pretrained checkpoints perplexity follows Transformers' "
    "causal-LM loss: mean next-token NLL over windows of --seq-len tokens, no loss on each window's "
    "first token. With --tasks instead of --data: lm-evaluation-harness tasks (HellaSwag, ARC, LAMBADA, "
    "your own YAML tasks with --include-path), scored as lm-eval's own hf model scores them (needs the "
    "eval extra: pip install klm[eval]). " + CHECKPOINT_HELP
)
@click.argument("run_dir", metavar="RUN", type=click.Path())
@click.option("--data", default=None, help="Text file (language model) or labelled file (classifier).")
@click.option(
    "--tasks",
    default=None,
    help="lm-eval tasks, comma-separated (hellaswag,arc_easy,lambada_openai, or tasks of --include-path), "
    "instead of --data.",
)
@click.option("--include-path", default=None, help="--tasks: a folder of your own lm-eval task YAML files.")
@click.option("--num-fewshot", type=int, default=None, help="--tasks: few-shot examples (default: each task's).")
@click.option("--limit", type=float, default=None, help="--tasks: documents per task (N), or a fraction of them (0.1).")
@click.option(
    "--apply-chat-template",
    is_flag=True,
    help="--tasks: render prompts with the run's chat template (SFT runs, checkpoints that ship one).",
)
@click.option(
    "--output", default=None, type=click.Path(), help="--tasks: also write lm-eval's results dict (JSON) here."
)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--batch-size", type=int, default=None, help="Evaluation batch size.")
@click.option("--text-field", default="text", show_default=True, help="Text field (JSONL) or column (CSV/TSV).")
@click.option("--label-field", default="label", show_default=True, help="Label field (JSONL) or column (CSV/TSV).")
@click.option(
    "--seq-len",
    type=int,
    default=None,
    help="Pretrained checkpoints: window length in tokens. Default: the model's context, at most 1024.",
)
@click.option(
    "--start-token/--no-start-token",
    "start_token",
    default=None,
    help="Pretrained checkpoints: start every document with the tokenizer's start token. Default: as the "
    "checkpoint's keras-hub preprocessor does (GPT-2, Llama 3: yes; Qwen: no).",
)
@click.option(
    "--max-new-tokens",
    type=int,
    default=None,
    help="SFT runs: tokens to generate at most per response (greedy). Default: the run's (64).",
)
@precision_option
@backend_option
@user_errors
def evaluate(
    run_dir,
    data,
    tasks,
    include_path,
    num_fewshot,
    limit,
    apply_chat_template,
    output,
    as_json,
    batch_size,
    text_field,
    label_field,
    seq_len,
    start_token,
    max_new_tokens,
    precision,
    backend,
):
    from klm.evaluate import evaluate_run, format_result

    if batch_size is not None and batch_size < 1:
        raise click.BadParameter(f"Expected a positive batch size. Received: --batch-size={batch_size}")
    if max_new_tokens is not None and max_new_tokens < 1:
        raise click.BadParameter(f"Expected a positive number. Received: --max-new-tokens={max_new_tokens}")
    if seq_len is not None and seq_len < 2:
        raise click.BadParameter(f"Expected --seq-len >= 2. Received: --seq-len={seq_len}")
    if (data is None) == (tasks is None):
        raise click.UsageError(
            "Expected --data FILE (perplexity, accuracy) or --tasks NAMES (lm-eval), one of them. Received: "
            + ("neither" if data is None else "both")
        )
    if tasks is not None:
        task_options = dict(include_path=include_path, num_fewshot=num_fewshot, limit=limit, batch_size=batch_size)
        _evaluate_tasks(run_dir, tasks, apply_chat_template, precision, as_json, output, **task_options)
        return
    task_flags = {"--include-path": include_path, "--num-fewshot": num_fewshot, "--limit": limit, "--output": output}
    given = [flag for flag, value in task_flags.items() if value is not None] + (
        ["--apply-chat-template"] if apply_chat_template else []
    )
    if given:
        raise click.UsageError(f"{', '.join(given)} go with --tasks. Received: --data with {', '.join(given)}")
    result = evaluate_run(
        run_dir,
        data,
        backend=backend,
        batch_size=batch_size,
        text_field=text_field,
        label_field=label_field,
        seq_len=seq_len,
        dtype=precision,
        add_start_token=start_token,
        max_new_tokens=max_new_tokens,
    )
    click.echo(json.dumps(result, indent=2) if as_json else format_result(result))


def _evaluate_tasks(run_dir, tasks, chat, precision, as_json, output, include_path, num_fewshot, limit, batch_size):
    from klm.evaluation.tasks import (
        HarnessConfig,
        format_tables,
        require_lm_eval,
        results_json,
        run_tasks,
        write_output,
    )

    config = HarnessConfig(
        run_dir=run_dir,
        tasks=tasks,
        include_path=include_path,
        num_fewshot=num_fewshot,
        limit=limit,
        batch_size=batch_size,
        apply_chat_template=chat,
        dtype=precision,
    )
    require_lm_eval()
    results = run_tasks(config)
    if output is not None:
        write_output(results, output)
    click.echo(results_json(results) if as_json else format_tables(results))


@click.command(
    help="Generate text from a language-model run or pretrained checkpoint (streams tokens as they "
    "come; keras-hub samplers, key/value cache). " + CHECKPOINT_HELP
)
@click.argument("run_dir", metavar="RUN", type=click.Path())
@click.option(
    "--prompt", default=None, help="Text to continue (an SFT run: the user's prompt; its template is applied)."
)
@options_from(GenerateConfig)
@click.option("--raw", is_flag=True, help="SFT runs: use the prompt as is, without the run's template.")
@click.option(
    "--chat",
    is_flag=True,
    help="SFT runs: a conversation: read one user turn per line from stdin, answer each (the conversation "
    "so far is kept), until end of input.",
)
@click.option("--system", default=None, help="SFT runs: a system message for the template.")
@click.option("--stop", multiple=True, help="Stop a response at this string (repeatable); end-of-text always stops.")
@precision_option
@backend_option
@click.pass_context
@user_errors
def generate(ctx, run_dir, prompt, raw, chat, system, stop, precision, backend, **sampler_flags):
    from klm.errors import ConfigError
    from klm.generate import check_utf8_text, utf8_lines

    if prompt is None and not chat:
        raise click.UsageError("Expected --prompt TEXT (or --chat to read turns from stdin). Received: no --prompt")
    if chat and prompt is not None:
        raise click.UsageError("--chat reads the prompts from stdin. Received: --chat with --prompt")
    try:
        config = GenerateConfig(
            run_dir=run_dir, prompt=prompt or "", backend=backend, **given_values(ctx, sampler_flags)
        )
    except ConfigError as e:
        raise click.UsageError(str(e)) from None
    for name, value in (("--prompt", prompt), ("--system", system)):
        if value is not None:
            try:
                check_utf8_text(value, name)
            except ConfigError as e:
                raise click.BadParameter(str(e)) from None
    from klm.generate import generate_text
    from klm.pretrained import load_checkpoint

    if config.seed is not None:
        from klm.backend import set_seed

        set_seed(config.seed)
    run = load_checkpoint(run_dir, dtype=precision)
    if not run.mode.generates:
        raise ConfigError(
            f"Expected a language model to generate from; {run_dir} is a {run.task} run. Received: RUN={run_dir!r}"
        )
    from klm.generate import generate_reply, sft_settings

    sampling = dict(
        max_new_tokens=config.max_new_tokens,
        sampler=config.sampler,
        temperature=config.temperature,
        top_k=config.top_k,
        top_p=config.top_p,
        seed=config.seed,
        stop=stop,
    )
    sft = sft_settings(run) is not None
    if chat and (raw or not sft):
        raise ConfigError(
            f"--chat needs an SFT run (klm finetune --task sft) and its template. Received: RUN={run_dir!r}"
            + (" with --raw" if raw else "")
        )
    if chat:
        history = []
        # Bytes, decoded here: a line that is not UTF-8 is named, not a traceback.
        for user in utf8_lines(sys.stdin.buffer, "stdin"):
            if not user.strip():
                continue
            click.echo("assistant: ", nl=False)
            reply = generate_reply(run, user, history=history, system=system, on_text=_echo, **sampling)
            click.echo("")
            history.append((user, reply))
        return
    if sft and not raw:
        generate_reply(run, prompt, system=system, on_text=_echo, **sampling)
        click.echo("")
        return
    # The prompt is echoed with the first generated piece, so a prompt the
    # model refuses (too long, ...) is not printed before the error.
    echo = _PromptEcho(prompt + ("" if run.run is None else " "))
    if stop:
        generate_reply(run, prompt, raw=True, on_text=echo, **sampling)
        echo.finish()
        return
    generate_text(
        run,
        [prompt],
        max_new_tokens=config.max_new_tokens,
        sampler=config.sampler,
        temperature=config.temperature,
        top_k=config.top_k,
        top_p=config.top_p,
        seed=config.seed,
        on_token=lambda row, piece: echo(piece),
    )
    echo.finish()


class _PromptEcho:
    """Streams generated pieces to stdout, printing the prompt before the first one."""

    def __init__(self, prompt):
        self.prompt = prompt

    def __call__(self, piece):
        if self.prompt is not None:
            click.echo(self.prompt, nl=False)
            self.prompt = None
        _echo(piece)

    def finish(self):
        if self.prompt is not None:
            click.echo(self.prompt, nl=False)
        click.echo("")


def _echo(piece):
    click.echo(piece, nl=False)
    sys.stdout.flush()
