"""`klm pretrain` and `klm finetune`: flags -> config dataclass -> `klm.train`."""

import click

from klm.cli.common import backend_option, load_config_file, user_errors


def _training_options(defaults):
    """Options shared by pretrain and finetune; `defaults` maps option -> default."""

    def decorate(func):
        options = [
            click.option("--run-dir", default=None, help="Run folder (created; re-running the same command resumes it)."),
            backend_option,
            click.option("--epochs", type=int, default=None, help=f"Passes over the training data. Default {defaults['epochs']}."),
            click.option("--max-steps", type=int, default=None, help="Stop after this many optimizer steps in total."),
            click.option("--batch-size", type=int, default=None, help=f"Global batch size. Default {defaults['batch_size']}."),
            click.option("--seq-len", type=int, default=None, help=f"Tokens per sequence (the seed's bptt). Default {defaults['seq_len']}."),
            click.option("--optimizer", type=click.Choice(["sgd", "adamw"]), default=None, help=f"Optimizer. Default {defaults['optimizer']}."),
            click.option("--lr", type=float, default=None, help=f"Peak learning rate. Default {defaults['lr']}."),
            click.option("--weight-decay", type=float, default=None, help="AdamW weight decay. Default 0.01."),
            click.option("--clipnorm", type=float, default=None, help=f"Global gradient-norm clipping (0: off). Default {defaults['clipnorm']}."),
            click.option("--schedule", type=click.Choice(["step", "cosine", "constant"]), default=None,
                         help=f"LR schedule: step (x lr-decay per epoch, the seed's StepLR), cosine (warm-up + cosine), constant. Default {defaults['schedule']}."),
            click.option("--lr-decay", type=float, default=None, help="Per-epoch LR factor for --schedule step. Default 0.95."),
            click.option("--warmup-steps", type=int, default=None, help="Linear warm-up steps for --schedule cosine."),
            click.option("--grad-accum", type=int, default=None, help="Accumulate gradients over this many batches per step."),
            click.option("--precision", type=click.Choice(["float32", "mixed_bfloat16", "mixed_float16", "bfloat16", "auto"]),
                         default=None,
                         help="Compute precision (bfloat16: bf16 weights too, halves a big checkpoint's memory). "
                              "Default float32. auto: mixed_bfloat16 where the device has bf16 units and the "
                              "backend's bf16 step measures faster there, else float32 (the choice and why are logged)."),
            click.option("--lora-rank", type=int, default=None,
                         help="Train LoRA adapters of this rank (and the head) instead of the whole backbone."),
            click.option("--lora-alpha", type=float, default=None, help="LoRA scale numerator (updates x alpha/rank). Default = rank."),
            click.option("--lora-targets", type=click.Choice(["attention", "qv", "all"]), default=None,
                         help="Layers that get adapters: attention (q, k, v, output; default), qv, or all (+ feed-forward)."),
            click.option("--jit", type=click.Choice(["auto", "on", "off"]), default=None, help="XLA compilation (TF/JAX). Default auto."),
            click.option("--steps-per-execution", type=int, default=None, help="Training steps per compiled call (fewer host round trips)."),
            click.option("--strategy", type=click.Choice(["auto", "single", "data", "mirrored", "model", "fsdp", "multi-worker"]),
                         default=None, help="Distribution: auto = all local accelerators (TF Mirrored / JAX DataParallel), single = one device."),
            click.option("--mesh", default=None, help="Device mesh for --strategy model/fsdp (JAX), e.g. data=2,model=2."),
            click.option("--cpu-devices", type=int, default=None,
                         help="Split the CPU into N logical devices (data parallelism without accelerators; JAX/TF)."),
            click.option("--coordinator", default=None, help="HOST:PORT of process 0, for multi-process JAX training."),
            click.option("--num-processes", type=int, default=None, help="Number of processes in a multi-process JAX run."),
            click.option("--process-id", type=int, default=None, help="This process's rank (0 .. num-processes-1)."),
            click.option("--seed", type=int, default=None, help="Random seed (weights, shuffling, dropout). Default 0."),
            click.option("--log-every", type=int, default=None, help=f"Log a line every N steps. Default {defaults['log_every']}."),
            click.option("--backup-every", type=int, default=None,
                         help="Write the resume backup every N optimizer steps (a kill loses at most these). Default 200."),
            click.option("--eval-every", type=int, default=None,
                         help="Validate every N optimizer steps (and at each epoch end); best.keras is chosen by step."),
            click.option("--eval-steps", type=int, default=None, help="Validate on the first K batches only. Default all."),
            click.option("--early-stop-patience", type=int, default=None,
                         help="Stop after P validations without improvement (needs validation data). Default off."),
            click.option("--early-stop-min-delta", type=float, default=None,
                         help="Smallest drop of the validation loss that counts as an improvement. Default 0."),
            click.option("--restart", is_flag=True, default=None, help="Delete the run folder's old run and start over."),
            click.option("--dropout", type=float, default=None, help="Override the preset's dropout."),
            click.option("--verbose", type=click.Choice(["auto", "bar", "lines", "quiet"]), default=None,
                         help="Progress display: bar (Keras), lines (plain log lines), auto = bar on a terminal."),
            click.option("--tokenizer", type=click.Choice(["word", "wordpiece", "sentencepiece", "sentencepiece-bpe", "byte"]),
                         default=None, help="Tokenizer to train on the data. Default word (the seed's basic_english)."),
            click.option("--vocab-size", type=int, default=None, help="Vocabulary size (word: keep the N most frequent; default all)."),
            click.option("--min-freq", type=int, default=None, help="Word tokenizer: drop words seen fewer times. Default 1."),
            click.option("--text-field", default=None, help="Text field (JSONL) or column (CSV/TSV). Default text."),
            click.option("--lowercase", is_flag=True, default=None, help="Lower-case text before tokenizing."),
            click.option("--strict", is_flag=True, default=None,
                         help="Fail on invalid UTF-8, naming file and line (default: replace and count)."),
            click.option("--scrub-privacy", is_flag=True, default=None,
                         help="Replace e-mails, URLs, IPs, phone and card numbers, secrets with placeholders."),
            click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
                         help="JSON or YAML file of options; flags given on the command line override it."),
        ]
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


def build_config(cls, config_file, flags):
    """`cls(**values)` from a --config file overlaid with the flags given; clean errors for both."""
    from klm.errors import ConfigError

    values = load_config_file(config_file) if config_file else {}
    values.pop("task", None)  # `klm finetune --task` picks the config class
    values.update({k: v for k, v in flags.items() if v is not None})
    unknown = set(values) - {f for f in cls.__dataclass_fields__}
    if unknown:
        raise click.BadParameter(f"Unknown option(s) in {config_file}: {sorted(unknown)}", param_hint="--config")
    try:
        return cls(**values)
    except ConfigError as e:
        raise click.UsageError(str(e))


@click.command(help="Pretrain a causal language model. Defaults reproduce the seed (preset seed, word tokenizer, SGD lr 5, clip 0.5, x0.95/epoch, batch 20 x 35).")
@click.option("--data", default=None, help="Training text: file, glob, folder, prepared folder (klm prepare) or dataset name (wikitext-2).")
@click.option("--valid", default=None, help="Validation file (default: the source's valid split, or --valid-fraction).")
@click.option("--test", default=None, help="Held-out file for the final test perplexity.")
@click.option("--valid-fraction", type=float, default=None, help="Hold out this fraction of the training text when there is no validation file.")
@click.option("--preset", type=click.Choice(["seed", "tiny", "small", "base"]), default=None, help="Model size. Default seed.")
@click.option("--batching", type=click.Choice(["contiguous", "shuffled"]), default=None,
              help="contiguous = the seed's batchify/bptt (default); shuffled = random windows.")
@click.option("--eval-batch-size", type=int, default=None, help="Batch size for validation/test. Default 10 (the seed's).")
@click.option("--init-from", default=None,
              help="Continue pretraining a checkpoint (klm run, keras-hub preset, hf://ORG/NAME, kaggle://..., local "
                   "folder) with its own tokenizer; --preset and tokenizer options are then unused.")
@_training_options(dict(epochs=1, batch_size=20, seq_len=35, optimizer="sgd", lr=5.0, clipnorm=0.5, schedule="step", log_every=200))
@user_errors
def pretrain(config_file, **flags):
    from klm.config import PretrainConfig
    from klm.train import pretrain as run

    config = build_config(PretrainConfig, config_file, flags)
    summary = run(config)
    click.echo(f"run folder: {config.run_dir}  (summary.json, best.keras, curves.png)")
    return summary


@click.command(help="Fine-tune a classifier head on a pretrained run (or train one from scratch with --from none).")
@click.option("--from", "from_run", default=None,
              help="Start from: a klm run folder, a keras-hub preset (gpt2_base_en), hf://ORG/NAME, kaggle://..., "
                   "a local keras-hub or Transformers folder; or 'none' to train from scratch.")
@click.option("--train", default=None, help="Labelled training data: 'LABEL TEXT' lines, CSV/TSV or JSONL.")
@click.option("--valid", default=None, help="Labelled validation data.")
@click.option("--test", default=None, help="Labelled test data (reported at the end).")
@click.option("--preset", type=click.Choice(["seed", "tiny", "small", "base"]), default=None, help="Model size with --from none. Default tiny.")
@click.option("--label-field", default=None, help="Label field (JSONL) or column (CSV/TSV). Default label.")
@click.option("--multi-label/--single-label", default=None, help="Multi-label (sigmoid) or single-label (softmax) head. Default: detected from the data.")
@click.option("--pooling", type=click.Choice(["last", "mean"]), default=None, help="Pool the last real token (default) or the mean.")
@click.option("--head-dropout", type=float, default=None, help="Dropout before the classifier head. Default 0.1.")
@click.option("--freeze-backbone", is_flag=True, default=None, help="Train only the classifier head.")
@click.option("--task", type=click.Choice(["classify", "sft"]), default=None,
              help="classify (default): a classifier head on labelled text. sft: supervised fine-tuning for generation "
                   "on prompt -> response data (JSONL prompt/response, Alpaca or chat messages; TSV/CSV).")
@click.option("--template", default=None,
              help="SFT: prompt template file with {system}, {prompt}, {response} slots. Default: the checkpoint's "
                   "chat template if it ships one, else klm's ('user: {prompt}' / 'assistant: {response}').")
@click.option("--train-on-prompt", is_flag=True, default=None, help="SFT: put the loss on prompt tokens too (default: responses only).")
@click.option("--packing", is_flag=True, default=None,
              help="SFT: pack several examples per sequence (attention kept within each; klm models only).")
@click.option("--truncate", type=click.Choice(["prompt", "refuse"]), default=None,
              help="SFT: examples over --seq-len lose tokens from the prompt's start (default) or are refused.")
@click.option("--eval-generations", type=int, default=None,
              help="SFT: held-out examples generated greedily for the final exact match / token F1. Default 64.")
@click.option("--max-new-tokens", type=int, default=None, help="SFT: generation budget of those examples. Default 64.")
@_training_options(dict(epochs=3, batch_size=32, seq_len=64, optimizer="adamw", lr=3e-4, clipnorm=1.0, schedule="constant", log_every=50))
@user_errors
def finetune(config_file, task, **flags):
    from klm.config import FinetuneConfig
    from klm.train import finetune as run

    sft_only = ("template", "train_on_prompt", "packing", "truncate", "eval_generations", "max_new_tokens")
    if task is None and config_file:
        task = load_config_file(config_file).get("task")
    if task == "sft":
        classify_only = ("label_field", "multi_label", "pooling", "head_dropout")
        given = [name for name in classify_only if flags.get(name) is not None]
        if given:
            raise click.UsageError(f"--{given[0].replace('_', '-')} applies to --task classify only. "
                                   f"Received: --task=sft with --{given[0].replace('_', '-')}")
        from klm.sft import SftConfig, finetune_sft

        config = build_config(SftConfig, config_file, {k: v for k, v in flags.items() if k not in classify_only})
        summary = finetune_sft(config)
        click.echo(f"run folder: {config.run_dir}  (summary.json, best.keras, curves.png)")
        return summary
    given = [name for name in sft_only if flags.get(name) is not None]
    if given:
        raise click.UsageError(f"--{given[0].replace('_', '-')} applies to --task sft only. "
                               f"Received: --{given[0].replace('_', '-')} without --task sft")
    flags = {k: v for k, v in flags.items() if k not in sft_only}
    config = build_config(FinetuneConfig, config_file, flags)
    summary = run(config)
    click.echo(f"run folder: {config.run_dir}  (summary.json, best.keras, curves.png)")
    return summary
