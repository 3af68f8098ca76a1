"""Fine-tuning a classifier: `finetune(FinetuneConfig)` (`klm finetune`, the default `--task classify`).

A classifier head (`KlmClassifier`) on a backbone: klm's own pretrained run
(`--from runs/lm`), any pretrained checkpoint (`--from hf://...`, a keras-hub
preset, a local folder; its own tokenizer), or a fresh one (`--from none`).
Like `klm.train.pretrain`, it does only what is its own -- read labelled
data, build the model and datasets, report accuracy and macro-F1 -- and
`klm.training.TrainingSession` does the rest (run folder, lock, exact
resume, the loop, checkpoints, summary).
"""

import math
from pathlib import Path

from klm import runs
from klm.config import FinetuneConfig
from klm.errors import ConfigError, RunDirError
from klm.metrics import classification_metrics
from klm.pretrained import classify
from klm.pretrained.checkpoint import check_backbone_seq_len
from klm.quantize import inherited_quantization
from klm.training.builders import (
    IDENTITY_FIELDS,
    backbone_overrides,
    build_optimizer,
    build_optimizer_state,
    cleaning_for,
    describe_model,
    enable_lora,
    load_checkpoint_for,
    log,
)
from klm.training.session import LoopPlan, TrainingSession, jit_compile, optimizer_steps


def _load_labelled(config, data_lib, run_labels, run_dir):
    """The labelled data; when resuming, encoded with the run's label vocabulary (`run_labels`).

    A resumed run keeps its classes: training data whose labels are not all
    among the run's would give the old head's outputs other meanings, so it
    is refused here, naming both label sets (not the training file's line).
    """

    def load(vocabulary):
        return data_lib.load_classification_data(
            config.train,
            valid=config.valid,
            test=config.test,
            text_field=config.text_field,
            label_field=config.label_field,
            label_vocabulary=vocabulary,
            cleaning=cleaning_for(config, classification=True),
        )

    labelled = load(None)
    if run_labels is None or labelled.label_vocabulary == run_labels:
        return labelled
    found = labelled.label_vocabulary
    if found.multi_label != run_labels.multi_label or not set(found.labels) <= set(run_labels.labels):
        kind = {True: "multi-label", False: "single-label"}
        raise RunDirError(
            f"{run_dir} holds a {kind[run_labels.multi_label]} classifier run with labels {run_labels.labels} "
            f"({runs.LABELS_FILE}), but --train has {kind[found.multi_label]} labels {found.labels}: resuming would "
            f"give the trained classes other meanings. Use data with the run's labels, another --run-dir, or "
            f"--restart to start over (deletes the old run). Received: --train={config.train!r}"
        )
    return load(run_labels)


def finetune(config: FinetuneConfig):
    """Fine-tunes (or trains from scratch) a classifier; returns the summary dict.

    With `from_run` a pretrained run folder, its backbone weights and
    tokenizer are reused; the tokenizer settings given here must match it.
    Resumes and finishes like `pretrain`.
    """
    session = TrainingSession(config, task="classifier")
    from klm import data as data_lib
    from klm.models import KlmBackbone, KlmClassifier

    native = _native_run(config.from_run)
    pretrained = _pretrained_source(config, session.resolved) if native else None
    if config.from_run == "none":  # before anything is written
        from klm.models.presets import check_preset_seq_len

        check_preset_seq_len(config.preset, config.seq_len)
    checkpoint = None
    with session:
        session.open(IDENTITY_FIELDS)
        log(
            f"klm finetune: backend={session.backend} run_dir={session.run_dir}"
            f"{' (resuming)' if session.resuming else ''}"
        )
        scope, description = session.distribution()
        if pretrained is not None:
            tokenizer = data_lib.load_tokenizer(str(Path(config.from_run) / runs.TOKENIZER_DIR))
        elif config.from_run != "none":
            _check_no_tokenizer_flags(config)
            with scope:
                checkpoint = load_checkpoint_for(config.from_run, config)
            tokenizer = checkpoint.tokenizer
            session.resolved.update(
                pretrained=checkpoint.source,
                tokenizer=checkpoint.source.get("tokenizer"),
                preset=checkpoint.source.get("architecture"),
                **inherited_quantization(config.from_run, checkpoint.model),
            )
        else:
            tokenizer = session.load_tokenizer()
        labels_path = session.run_dir / runs.LABELS_FILE
        run_labels = (
            data_lib.LabelVocabulary.load(str(labels_path)) if session.resuming and labels_path.exists() else None
        )
        labelled = _load_labelled(config, data_lib, run_labels, session.run_dir)
        vocabulary = labelled.label_vocabulary
        labels, multi_label = list(vocabulary.labels), bool(vocabulary.multi_label)
        if config.multi_label is not None and config.multi_label != multi_label:
            raise ConfigError(
                f"--{'multi' if config.multi_label else 'single'}-label was given, but the labels in {config.train} "
                f"are {'multi' if multi_label else 'single'}-label. Received: --multi-label={config.multi_label}"
            )
        if len(labels) < 2 and not multi_label:
            raise ConfigError(
                f"Expected at least 2 classes in --train to learn a classifier; {config.train} has only "
                f"{len(labels)}: {labels}. Add examples of the other classes. Received: --train={config.train!r}"
            )
        if tokenizer is None:
            kind = config.tokenizer or "word"
            tokenizer = data_lib.train_tokenizer(
                "sentencepiece" if kind == "sentencepiece-bpe" else kind,
                labelled.train["texts"],
                vocab_size=config.vocab_size,
                min_freq=config.min_freq,
                **({"sentencepiece_model_type": "bpe"} if kind == "sentencepiece-bpe" else {}),
            )
        vocabulary_size = int(tokenizer.vocabulary_size())
        steps_per_epoch = math.ceil(len(labelled.train["texts"]) / config.batch_size)
        plan = LoopPlan.from_config(config, steps_per_epoch)
        finished = session.already_finished(plan)
        if finished is not None:
            return finished
        session.resolved.update(
            vocabulary_size=vocabulary_size,
            labels=labels,
            multi_label=multi_label,
            cleaning_report=getattr(labelled, "cleaning_report", None),
        )
        session.write_run_files(tokenizer, {runs.LABELS_FILE: {"labels": labels, "multi_label": multi_label}})

        def dataset(split, shuffle, epoch=None):
            return data_lib.classification_dataset(
                split["texts"],
                split["labels"],
                tokenizer,
                config.seq_len,
                config.batch_size,
                shuffle=shuffle,
                seed=config.seed,
                epoch=epoch,
            )

        def make_train_data(epoch, offset, length):
            return dataset(labelled.train, True, epoch).skip(offset).take(length)

        valid_ds = dataset(labelled.valid, False) if labelled.valid is not None else None
        test_ds = dataset(labelled.test, False) if labelled.test is not None else None

        with scope:
            if checkpoint is not None:
                backbone = checkpoint.backbone
            elif pretrained is not None:
                lm = runs.load_model(runs.checkpoint_path(config.from_run, "best"))
                backbone_config = lm.backbone.get_config()
                if config.dropout is not None:
                    backbone_config["dropout"] = config.dropout

                check_backbone_seq_len(lm.backbone, config.seq_len, config.from_run)
                backbone = KlmBackbone.from_config(backbone_config)
                backbone.set_weights(lm.backbone.get_weights())
                del lm
            else:
                backbone = KlmBackbone(**backbone_overrides(config, vocabulary_size))
            backbone.trainable = not config.freeze_backbone
            model = KlmClassifier(
                backbone,
                num_classes=len(labels),
                multi_label=multi_label,
                pooling=config.pooling,
                dropout=config.head_dropout,
            )
            enable_lora(model, config, session)
            model.compile(
                optimizer=build_optimizer(config, steps_per_epoch, optimizer_steps(plan)),
                jit_compile=jit_compile(config),
                steps_per_execution=config.steps_per_execution,
            )
            model.build({"token_ids": (None, None), "padding_mask": (None, None)})
            build_optimizer_state(model)
        log(f"model: {describe_model(model)} | from {config.from_run} | {len(labels)} classes | {description}")
        logger = session.step_logger(steps_per_epoch, config.batch_size * config.seq_len, "accuracy")
        state = session.fit(model, plan, make_train_data, valid_ds, logger)

        best = runs.load_model(runs.checkpoint_path(session.run_dir, "best"))

        extra = {"task": "classifier", "labels": labels, "multi_label": multi_label}
        for split, ds in (("valid", valid_ds), ("test", test_ds)):
            if ds is not None:
                metrics = classification_metrics(best, ds, labels, multi_label)
                extra[f"{split}_accuracy"] = metrics["accuracy"]
                extra[f"{split}_macro_f1"] = metrics["macro_f1"]
        extra["train_tokens"] = state.batches_done * config.batch_size * config.seq_len
        if "test_accuracy" in extra and session.chief:
            print(
                f"| End of training | test accuracy {extra['test_accuracy']:.4f} | "
                f"test macro-F1 {extra['test_macro_f1']:.4f}"
            )
        return session.finish(model, state, logger, extra, metric="accuracy")


def _native_run(spec):
    """Whether `--from` names a klm run folder with klm's own model (not one started from a checkpoint)."""
    if spec == "none":
        return False

    if classify(spec) != "klm_run":
        return False
    return not runs.read_run_config(spec).get("pretrained")


def _check_no_tokenizer_flags(config):
    for field in ("tokenizer", "vocab_size"):
        if getattr(config, field) is not None:
            raise ConfigError(
                f"--{field.replace('_', '-')} cannot be used with --from {config.from_run}: a pretrained checkpoint "
                f"brings its own tokenizer. Received: --{field.replace('_', '-')}={getattr(config, field)!r}"
            )


def _pretrained_source(config, resolved):
    """Checks `--from` (a pretraining run) against the tokenizer flags; `None` for `--from none`."""
    if config.from_run == "none":
        return None
    source_config = runs.read_run_config(config.from_run)
    if not runs.run_task(source_config).generates:
        raise RunDirError(
            f"Expected --from to be a pretraining run (task causal_lm). "
            f"Received: --from={config.from_run!r} (task {source_config['task']})"
        )
    # The text must be tokenized exactly as in pretraining: any tokenizer
    # setting given here has to agree with the pretrained run's.
    for field in ("tokenizer", "vocab_size", "min_freq", "lowercase"):
        given, used = getattr(config, field), source_config.get(field)
        explicit = given is not None and not (field == "min_freq" and given == 1) and given is not False
        if explicit and given != used:
            raise ConfigError(
                f"--{field.replace('_', '-')} {given} does not match the pretrained run {config.from_run}, "
                f"which used {field}={used!r}: fine-tuning must tokenize like pretraining. Leave the "
                f"option out to reuse the run's tokenizer. Received: --{field.replace('_', '-')}={given!r}"
            )
    resolved["tokenizer"] = source_config.get("tokenizer")
    resolved["preset"] = source_config.get("preset")
    return source_config
