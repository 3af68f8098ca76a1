"""Pretraining: `pretrain(PretrainConfig)`, the causal-LM recipe.

The builders every recipe shares (`build_optimizer`, `compile_causal_lm`,
`build_causal_lm`, ...) are in `klm.training.builders`. Each recipe does only what
is its own — load its data, build its model and datasets, report its
figures; `klm.training.TrainingSession` does the rest (run folder, lock,
exact resume, the training loop, checkpoints, summary).
The backend must be chosen before Keras is imported, so this module imports
Keras only inside its functions, after `klm.backend.use_backend`.
"""

from klm import runs
from klm.config import PretrainConfig
from klm.data.lm.model_inputs import lm_model_inputs, num_tokens
from klm.errors import (
    ConfigError,
    TrainingDiverged,  # noqa: F401 - importable from here, as before
    TrainingInterrupted,  # noqa: F401
)
from klm.quantize import inherited_quantization
from klm.training.builders import (
    IDENTITY_FIELDS,
    build_causal_lm,
    checkpoint_corpus,
    compile_pretrained_lm,
    describe_model,
    evaluate_loss,
    load_checkpoint_for,
    load_pretrain_corpus,
    log,
    perplexity_or_none,
)
from klm.training.session import LoopPlan, TrainingSession, optimizer_steps


def pretrain(config: PretrainConfig):
    """Pretrains a causal LM and returns the summary dict (also in `summary.json`).

    Re-running with the same `run_dir` resumes exactly where the last backup
    left off; a finished run is left as it is; `config.restart` starts over.

    Example:
    ```python
    from klm.config import PretrainConfig
    from klm.train import pretrain
    summary = pretrain(PretrainConfig(data="corpus.txt", run_dir="runs/demo", preset="tiny", max_steps=50))
    ```
    """
    from klm.losses import lm_loss

    session = TrainingSession(config, task="causal_lm")
    from klm import data as data_lib
    from klm.models.presets import check_preset_seq_len

    if not config.init_from:  # before anything is written (a checkpoint's positions: once it is loaded)
        check_preset_seq_len(config.preset, config.seq_len)

    with session:
        session.open(IDENTITY_FIELDS)
        log(
            f"klm pretrain: backend={session.backend} run_dir={session.run_dir}"
            f"{' (resuming)' if session.resuming else ''}"
        )
        scope, description = session.distribution()
        checkpoint = None
        if config.init_from:
            with scope:
                checkpoint = load_checkpoint_for(config.init_from, config)
            corpus = checkpoint_corpus(config, checkpoint)
            session.resolved.update(
                pretrained=checkpoint.source, **inherited_quantization(config.init_from, checkpoint.model)
            )
        else:
            corpus = load_pretrain_corpus(config, session.load_tokenizer())
        tokenizer = corpus.tokenizer
        vocabulary_size = int(tokenizer.vocabulary_size())
        train_tokens = num_tokens(corpus.train)
        steps_per_epoch = data_lib.lm_steps_per_epoch(
            train_tokens, config.seq_len, config.batch_size, mode=config.batching
        )
        if steps_per_epoch < 1:
            raise ConfigError(
                f"The training text has {train_tokens} tokens, too few for one batch of "
                f"--batch-size {config.batch_size} x --seq-len {config.seq_len}. Received: --data={config.data!r}"
            )
        # Contiguous batching ends each epoch with the reference's shorter step (if
        # the columns do not divide evenly); count its tokens exactly.
        tokens_per_epoch = data_lib.lm_tokens_per_epoch(
            train_tokens, config.seq_len, config.batch_size, mode=config.batching
        )
        tokens_per_step = config.batch_size * config.seq_len
        plan = LoopPlan.from_config(config, steps_per_epoch)
        finished = session.already_finished(plan)
        if finished is not None:
            return finished
        session.resolved.update(
            vocabulary_size=vocabulary_size,
            train_tokens=train_tokens,
            eos_between_documents=corpus.eos_between_documents,
            cleaning_report=corpus.cleaning_report,
        )
        session.write_run_files(tokenizer)

        train_split = corpus.split("train")

        def make_train_data(epoch, offset, length):
            dataset = data_lib.lm_dataset(
                train_split, config.seq_len, config.batch_size, mode=config.batching, seed=config.seed, epoch=epoch
            )
            return lm_model_inputs(dataset.skip(offset).take(length))

        eval_ds = {}
        for split in ("valid", "test"):
            # Held-out splits too short for one batch of eval_batch_size are skipped.
            if (
                corpus.split(split) is not None
                and data_lib.lm_steps_per_epoch(
                    num_tokens(corpus.split(split)), config.seq_len, config.eval_batch_size, mode="contiguous"
                )
                >= 1
            ):
                eval_ds[split] = lm_model_inputs(
                    data_lib.lm_dataset(corpus.split(split), config.seq_len, config.eval_batch_size, mode="contiguous")
                )

        with scope:
            if checkpoint is None:
                model = build_causal_lm(config, vocabulary_size, steps_per_epoch, optimizer_steps(plan))
            else:
                model = compile_pretrained_lm(checkpoint, config, session, steps_per_epoch, optimizer_steps(plan))
        log(
            f"model: {describe_model(model)} | "
            f"{'from ' + config.init_from if checkpoint else 'preset ' + config.preset} | "
            f"precision {config.precision} | {description}\n"
            f"data: {train_tokens:,} training tokens, {steps_per_epoch} steps/epoch of "
            f"{config.batch_size}x{config.seq_len}, vocabulary {vocabulary_size:,}"
        )
        logger = session.step_logger(
            steps_per_epoch,
            tokens_per_step,
            "ppl",
            last_step_tokens=tokens_per_epoch - (steps_per_epoch - 1) * tokens_per_step,
        )
        state = session.fit(model, plan, make_train_data, eval_ds.get("valid"), logger)

        # Report the best checkpoint on held-out data, as the reference does.
        best = runs.load_model(runs.checkpoint_path(session.run_dir, "best"))
        best.compile(loss=lm_loss(), weighted_metrics=[])
        valid_loss = evaluate_loss(best, eval_ds.get("valid"))
        test_loss = evaluate_loss(best, eval_ds.get("test"))
        full_epochs, rest = divmod(state.batches_done, steps_per_epoch)
        extra = {
            "task": "causal_lm",
            "train_tokens": full_epochs * tokens_per_epoch + rest * tokens_per_step,
            "valid_loss": valid_loss,
            "valid_ppl": perplexity_or_none(valid_loss),
            "test_loss": test_loss,
            "test_ppl": perplexity_or_none(test_loss),
        }
        if test_loss is not None and session.chief:
            line = "=" * 89
            print(
                f"{line}\n| End of training | test loss {test_loss:5.2f} | "
                f"test ppl {perplexity_or_none(test_loss):8.2f}\n{line}",
                flush=True,
            )
        return session.finish(model, state, logger, extra, metric="ppl")
