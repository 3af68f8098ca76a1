"""`klm evaluate` and `klm generate`."""

import json
import sys

import click

from klm.cli.common import backend_option, user_errors
from klm.cli.options import cli_fields, given_values, options_from
from klm.config import GenerateConfig
from klm.evaluation.config import EvaluateConfig
from klm.evaluation.tasks import HarnessConfig

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
@options_from(EvaluateConfig)
@options_from(HarnessConfig)
@precision_option
@backend_option
@click.pass_context
@user_errors
def evaluate(ctx, run_dir, precision, backend, **flags):
    from klm.errors import ConfigError

    values = given_values(ctx, flags)
    task_options = {name: values.pop(name) for name in cli_fields(HarnessConfig) if name in values}
    try:
        config = EvaluateConfig(
            run_dir=run_dir, precision=precision, backend=backend, task_options=task_options, **values
        )
    except ConfigError as e:
        raise click.BadParameter(str(e)) from None
    if config.harness is not None:
        _evaluate_tasks(config.harness, config.json)
        return
    from klm.evaluate import evaluate_run, format_result

    result = evaluate_run(
        run_dir,
        config.data,
        backend=backend,
        batch_size=config.batch_size,
        text_field=config.text_field,
        label_field=config.label_field,
        seq_len=config.seq_len,
        dtype=precision,
        add_start_token=config.start_token,
        max_new_tokens=config.max_new_tokens,
    )
    click.echo(json.dumps(result, indent=2) if config.json else format_result(result))


def _evaluate_tasks(config, as_json):
    from klm.evaluation.tasks import format_tables, require_lm_eval, results_json, run_tasks, write_output

    require_lm_eval()
    results = run_tasks(config)
    if config.output is not None:
        write_output(results, config.output)
    click.echo(results_json(results) if as_json else format_tables(results))


@click.command(
    help="Generate text from a language-model run or pretrained checkpoint (streams tokens as they "
    "come; keras-hub samplers, key/value cache). " + CHECKPOINT_HELP
)
@click.argument("run_dir", metavar="RUN", type=click.Path())
@options_from(GenerateConfig)
@precision_option
@backend_option
@click.pass_context
@user_errors
def generate(ctx, run_dir, precision, backend, **flags):
    from klm.errors import ConfigError
    from klm.generate import utf8_lines

    try:
        config = GenerateConfig(run_dir=run_dir, backend=backend, **given_values(ctx, flags))
    except ConfigError as e:
        raise click.UsageError(str(e)) from None
    prompt, raw, chat, system, stop = config.prompt, config.raw, config.chat, config.system, tuple(config.stop)
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
