"""`finetune_sft(SftConfig)`: supervised fine-tuning for generation (`klm finetune --task sft`).

Like `klm.finetune.finetune`, the recipe does only what is its own -- read and
tokenize the prompt/response data, build the model, the batches and the
report -- and `klm.training.TrainingSession` does the rest (run folder,
lock, exact resume, evaluation every N steps, early stopping, summary).
The run is a language-model run (`task: causal_lm` in `config.json`) with
`finetune_task: "sft"` and an `sft` section (template, end-of-text and
start ids, masking and packing): `klm evaluate`, `klm generate` and
`klm export` read it to apply the template.
"""

import math

from klm import runs
from klm.data.text.cleaner import TextCleaner
from klm.data.text.cleaning_config import CleaningConfig
from klm.errors import ConfigError
from klm.generate import position_limit
from klm.pretrained import apply_lora, load_checkpoint, save_tokenizer
from klm.pretrained.checkpoint import check_backbone_seq_len, classify
from klm.sft import batching
from klm.sft.chat_template import checkpoint_chat_template
from klm.sft.config import SftConfig
from klm.sft.conversations import clean_conversations, read_conversations
from klm.sft.encoding import encode_conversations
from klm.sft.evaluation import generation_metrics, perplexity, response_loss
from klm.sft.prompt_template import PromptTemplate, template_from_dict
from klm.tasks import get_task
from klm.training.builders import backbone_overrides, build_optimizer_state, cleaning_for, compile_causal_lm, log
from klm.training.session import LoopPlan, TrainingSession, optimizer_steps

# Fields that must match when an existing run folder is resumed.
IDENTITY_FIELDS = (
    "task",
    "finetune_task",
    "preset",
    "tokenizer",
    "vocab_size",
    "seq_len",
    "min_freq",
    "from_run",
    "packing",
    "train_on_prompt",
    "lora_rank",
)


def sft_cleaning(config):
    """The `CleaningConfig` of `--lowercase` / `--strict` / `--scrub-privacy` for SFT data, or `None`: no cleaning.

    The steps are pretraining's (`klm.data.text.cleaner.TextCleaner`), with
    the default Unicode normalization and control-character removal, but
    whitespace is kept: newlines in prompts and responses (code, lists, the
    Alpaca `instruction + "\\n" + input`) are part of what the model learns.
    No text is dropped (`min_length=0`): a conversation is kept or refused
    whole. Without any of the flags the data is used as written (as before).
    """
    chosen = cleaning_for(config)
    if not chosen:
        return None
    return CleaningConfig(collapse_whitespace=False, min_length=0, **chosen)


def read_sft_data(config):
    """`(train, valid, test, cleaning_report)`: the conversations of each file, cleaned as the flags ask.

    `cleaning_report` is the `TextCleaner`'s counts (privacy replacements
    per kind, ...), or `None` when no cleaning flag is set.
    """
    cleaning = sft_cleaning(config)
    cleaner = None if cleaning is None else TextCleaner(cleaning)

    def read(path):
        if path is None:
            return None
        conversations = read_conversations(path)
        return conversations if cleaner is None else clean_conversations(conversations, cleaner)

    train, valid, test = read(config.train), read(config.valid), read(config.test)
    return train, valid, test, None if cleaner is None else cleaner.report()


def resolve_template(config, checkpoint=None):
    """The template of a run: `--template FILE`, else a checkpoint's chat template, else klm's default."""

    if config.template:
        return PromptTemplate.from_file(config.template)
    if checkpoint is not None:
        source_config = checkpoint.config
        prompt_settings = checkpoint.mode.prompt_settings(source_config)
        if prompt_settings is not None:  # continuing an SFT run: its template
            return template_from_dict(prompt_settings["template"])
        spec = config.from_run if checkpoint.run is None else (source_config.get("pretrained") or {}).get("name")
        if spec:
            chat = checkpoint_chat_template(spec, checkpoint.tokenizer)
            if chat is not None:
                return chat
    return PromptTemplate()


def _source_kind(config):
    """`(kind, source run config)`: `"none"`, `"klm_run"` or `"pretrained"`; reads no weights, imports no Keras."""
    if config.from_run == "none":
        return "none", None

    if classify(config.from_run) != "klm_run":
        return "pretrained", None
    source_config = runs.read_run_config(config.from_run)
    if not runs.run_task(source_config).generates:
        raise ConfigError(
            f"Expected --from to be a language model (a pretraining or SFT run, or a pretrained checkpoint). "
            f"Received: --from={config.from_run!r} (task {source_config.get('task')})"
        )
    return ("pretrained" if source_config.get("pretrained") else "klm_run"), source_config


def _identity(config, kind, source_config, resolved):
    """Sets the run's identity fields (compared when a run folder is resumed) before the folder is opened."""
    resolved.update(get_task("sft").run_config_fields())
    if kind == "none":
        resolved["tokenizer"] = config.tokenizer or "word"
    elif kind == "klm_run":
        _check_tokenizer_flags(config, source_config)
        resolved["tokenizer"] = source_config.get("tokenizer")
        resolved["preset"] = source_config.get("preset")
        resolved["vocab_size"] = source_config.get("vocab_size")
    else:
        if config.tokenizer is not None or config.vocab_size is not None:
            raise ConfigError(
                f"A pretrained checkpoint brings its own tokenizer. Received: --tokenizer={config.tokenizer!r} "
                f"--vocab-size={config.vocab_size!r} with --from={config.from_run!r}"
            )
        resolved["preset"] = None


def _check_tokenizer_flags(config, source_config):
    for field in ("tokenizer", "vocab_size"):
        given = getattr(config, field)
        if given is not None and given != source_config.get(field):
            raise ConfigError(
                f"--{field.replace('_', '-')} {given} does not match --from {config.from_run}, which used "
                f"{field}={source_config.get(field)!r}: fine-tuning must tokenize like the model it starts from. "
                f"Leave the option out. Received: --{field.replace('_', '-')}={given!r}"
            )


def sft_loss():
    """Next-token cross-entropy averaged over the weighted (response) tokens of a batch."""
    from klm.losses import SparseCrossEntropyFromLogits

    return SparseCrossEntropyFromLogits(reduction="mean_with_sample_weight")


def finetune_sft(config: SftConfig):
    """Fine-tunes a causal LM on prompt -> response data; returns the summary dict.

    Reads `config.train` (and `valid`/`test`) first: a malformed line, a
    missing field, an unknown role or an empty response stops the command
    before anything is written. Re-running the same command resumes; a
    finished run is left as it is.

    Example:
    ```python
    from klm.sft import SftConfig
    from klm.sft.recipe import finetune_sft
    summary = finetune_sft(SftConfig(train="train.jsonl", valid="valid.jsonl", run_dir="runs/sft",
                                     preset="tiny", tokenizer="word", max_steps=300, lr=3e-3))
    summary["valid_exact_match"]
    ```
    """
    session = TrainingSession(config, task="causal_lm")
    train, valid, test, cleaning_report = read_sft_data(config)

    kind, source_config = _source_kind(config)
    if kind == "none":  # before anything is written (a checkpoint's positions: once it is loaded)
        from klm.models.presets import check_preset_seq_len

        check_preset_seq_len(config.preset, config.seq_len)
    _identity(config, kind, source_config, session.resolved)
    with session:
        session.open(IDENTITY_FIELDS)
        log(
            f"klm finetune --task sft: backend={session.backend} run_dir={session.run_dir}"
            f"{' (resuming)' if session.resuming else ''}"
        )
        checkpoint = None
        if kind != "none":
            checkpoint = load_checkpoint(config.from_run)
            check_backbone_seq_len(checkpoint.backbone, config.seq_len, config.from_run)
        template = resolve_template(config, checkpoint)
        start_token_id = None
        if kind == "none":
            tokenizer = session.load_tokenizer()
            if tokenizer is None:
                tokenizer = _train_tokenizer(config, train, template)
        else:
            tokenizer = checkpoint.tokenizer
            start_token_id = checkpoint.start_token_id
            if kind == "pretrained":
                session.resolved["pretrained"] = checkpoint.source
        end_token_id = getattr(tokenizer, "end_token_id", None)
        pad_id = getattr(tokenizer, "pad_token_id", None)
        pad_id = 0 if pad_id is None else int(pad_id)
        if config.packing and kind == "pretrained":
            raise ConfigError(
                f"--packing needs klm's own models (KlmBackbone takes segment ids; {checkpoint.source.get('backbone')} "
                "cannot keep attention within each packed example). Leave --packing out: examples are then padded "
                f"per batch. Received: --packing with --from={config.from_run!r}"
            )
        log(f"template: {template.source}")

        def encode(conversations):
            return encode_conversations(
                conversations,
                template,
                tokenizer,
                config.seq_len,
                truncate=config.truncate,
                end_token_id=end_token_id,
                start_token_id=start_token_id,
            )

        train_examples, report = encode(train)
        if cleaning_report is not None:
            report["cleaning"] = cleaning_report
        valid_examples = encode(valid)[0] if valid else None
        test_examples = encode(test)[0] if test else None
        if config.packing:
            rows = batching.pack_rows(train_examples, config.seq_len, seed=config.seed)
            steps_per_epoch = math.ceil(len(rows) / config.batch_size)

            def epoch_batches(epoch):
                return batching.packed_batches(
                    train_examples,
                    rows,
                    config.batch_size,
                    pad_id,
                    config.seq_len,
                    config.seed,
                    epoch,
                    config.train_on_prompt,
                )
        else:
            steps_per_epoch = math.ceil(len(train_examples) / config.batch_size)

            def epoch_batches(epoch):
                return batching.padded_batches(
                    train_examples,
                    config.batch_size,
                    pad_id,
                    config.seq_len,
                    seed=config.seed,
                    epoch=epoch,
                    train_on_prompt=config.train_on_prompt,
                )

        first_epoch = epoch_batches(0)
        real_tokens = sum(int(batch[0]["padding_mask"].sum()) for batch in first_epoch)
        report.update(
            padding_fraction=round(batching.padding_fraction(first_epoch), 4),
            sequences=sum(len(batch[1]) for batch in first_epoch),
            steps_per_epoch=steps_per_epoch,
        )
        plan = LoopPlan.from_config(config, steps_per_epoch)
        finished = session.already_finished(plan)
        if finished is not None:
            return finished
        vocabulary_size = int(tokenizer.vocabulary_size())
        session.resolved.update(
            vocabulary_size=vocabulary_size,
            sft={
                "template": template.to_dict(),
                "end_token_id": None if end_token_id is None else int(end_token_id),
                "start_token_id": None if start_token_id is None else int(start_token_id),
                "pad_token_id": pad_id,
                "train_on_prompt": config.train_on_prompt,
                "packing": config.packing,
                "data": report,
            },
        )
        _write_run_files(session, tokenizer, kind)
        log(
            f"data: {len(train_examples)} examples ({report['truncated_examples']} truncated, "
            f"{report['truncated_tokens']} tokens cut), {report['response_tokens']} response tokens, "
            f"{steps_per_epoch} steps/epoch, {'packed' if config.packing else 'padded'}: "
            f"{report['padding_fraction']:.1%} of positions are padding"
        )

        cache = {0: first_epoch}  # the batches of the epoch being trained (an epoch runs in several segments)

        def make_train_data(epoch, offset, length):
            if epoch not in cache:
                cache.clear()
                cache[epoch] = epoch_batches(epoch)
            return batching.to_dataset(cache[epoch][offset : offset + length])

        def eval_data(examples):
            if not examples:
                return None
            return batching.to_dataset(
                batching.padded_batches(
                    examples, config.eval_batch_size, pad_id, config.seq_len, train_on_prompt=config.train_on_prompt
                )
            )

        valid_ds = eval_data(valid_examples)
        scope, description = session.distribution()
        with scope:
            model = _build_model(config, kind, checkpoint, vocabulary_size)
            lora = None
            if config.lora_rank:
                lora = apply_lora(
                    model,
                    int(config.lora_rank),
                    config.lora_alpha,
                    targets=getattr(config, "lora_targets", "attention"),
                )
            compile_causal_lm(model, config, steps_per_epoch, optimizer_steps(plan), loss=sft_loss())
        log(
            f"model: {model} | from {config.from_run} | {description}"
            + (f" | LoRA rank {lora['rank']}: {lora['trainable']:,} trainable parameters" if lora else "")
        )
        build_optimizer_state(model)  # a resumed run loads it from its backup
        logger = session.step_logger(steps_per_epoch, max(1, round(real_tokens / steps_per_epoch)), "ppl")
        state = session.fit(model, plan, make_train_data, valid_ds, logger)

        best = runs.load_model(runs.checkpoint_path(session.run_dir, "best"))
        extra = {
            **get_task("sft").run_config_fields(),
            "template": template.source,
            "data": report,
            "train_tokens": state.batches_done * logger.tokens_per_step,
        }
        if lora:
            extra["lora"] = {key: lora[key] for key in ("rank", "alpha", "targets", "trainable", "total", "lora")}
        extra.update(
            _held_out_report(
                config,
                best,
                tokenizer,
                template,
                valid,
                valid_examples,
                test,
                test_examples,
                pad_id,
                end_token_id,
                start_token_id,
            )
        )
        if session.chief and "valid_exact_match" in extra:
            print(
                f"| End of training | valid response loss {extra['valid_response_loss']:.4f} | "
                f"exact match {extra['valid_exact_match']:.3f} | token F1 {extra['valid_token_f1']:.3f}",
                flush=True,
            )
        return session.finish(model, state, logger, extra, metric="ppl")


def _held_out_report(
    config, model, tokenizer, template, valid, valid_examples, test, test_examples, pad_id, end_token_id, start_token_id
):

    out = {}
    for split, conversations, examples in (("valid", valid, valid_examples), ("test", test, test_examples)):
        if not examples:
            continue
        loss, tokens = response_loss(
            model,
            batching.padded_batches(examples, config.eval_batch_size, pad_id, config.seq_len, train_on_prompt=False),
        )
        out[f"{split}_response_loss"] = loss
        out[f"{split}_response_perplexity"] = perplexity(loss)
        if config.eval_generations:
            metrics = generation_metrics(
                model,
                tokenizer,
                template,
                conversations[: config.eval_generations],
                config.max_new_tokens,
                end_token_id,
                start_token_id,
                limit=position_limit(model),
            )
            out[f"{split}_exact_match"] = metrics["exact_match"]
            out[f"{split}_token_f1"] = metrics["token_f1"]
            out[f"{split}_generated_examples"] = metrics["examples"]
    return out


def _train_tokenizer(config, conversations, template):
    from klm import data as data_lib

    kind = config.tokenizer or "word"
    texts = [text for conversation in conversations for text in conversation.texts]
    texts.append(template.prompt_text("", system=""))  # the template's own words (role markers)
    return data_lib.train_tokenizer(
        "sentencepiece" if kind == "sentencepiece-bpe" else kind,
        texts,
        vocab_size=config.vocab_size,
        min_freq=config.min_freq,
        **({"sentencepiece_model_type": "bpe"} if kind == "sentencepiece-bpe" else {}),
    )


def _write_run_files(session, tokenizer, kind):
    if kind == "pretrained":
        session.folder.save_tokenizer(tokenizer, save_tokenizer)
        session.folder.write_json(runs.CONFIG_FILE, session.resolved)
    else:
        session.write_run_files(tokenizer)


def _build_model(config, kind, checkpoint, vocabulary_size):
    from klm.models import KlmBackbone, KlmCausalLM

    if kind == "none":
        backbone = KlmBackbone(**backbone_overrides(config, vocabulary_size))
        model = KlmCausalLM(backbone)
        model.build({"token_ids": (None, None), "padding_mask": (None, None)})
        return model
    model = checkpoint.model
    if getattr(model, "preprocessor", None) is not None:
        # klm feeds token ids: keras-hub's fit() would run the preprocessor over them.
        model.preprocessor = None
    if kind == "klm_run" and config.dropout is not None:
        backbone_config = model.backbone.get_config()
        backbone_config["dropout"] = config.dropout
        backbone = KlmBackbone.from_config(backbone_config)
        backbone.set_weights(model.backbone.get_weights())
        model = KlmCausalLM(backbone)
    return model
