"""`TrainingSession`: what every training mode shares, from `setup` to `finish`.

A mode (`klm.train.pretrain`, `klm.train.finetune`, ...) does only what
differs: load its data, build its model and datasets, and add its figures to
the summary. The session does the rest, the same way for all of them:

    setup     backend, devices, cluster, seeds, precision (before Keras)
    open      the run folder (`RunFolder`: lock, identity, start over)
    fit       the training loop below, resumed exactly where it stopped
    finish    curves.png and summary.json

The loop runs `model.fit` in *segments*: stretches of batches that end at
every backup point (`--backup-every`), evaluation point (`--eval-every`),
epoch end and the run's last batch. Between two segments nothing is in
flight, so the backup written there is exact: weights, optimizer, the
dropout RNG, the position in the data, the log window, the best score and
early-stopping patience. A resumed run starts its first segment at the
backup's batch, with the dataset of that epoch (`make_train_data(epoch,
offset, length)`), so it trains on the batches, with the random draws and
learning rates, that the uninterrupted run would have, and its segments are
the uninterrupted run's segments.
"""

import dataclasses
import math
import sys
import time
from pathlib import Path

from klm import backend as backend_lib
from klm import runs
from klm.errors import ConfigError, TrainingDiverged, TrainingInterrupted
from klm.pretrained import (
    load_tokenizer,
    save_tokenizer,  # klm's tokenizers and keras-hub's
)
from klm.training.run_folder import BEST_FILE, RunFolder, fault_point
from klm.training.state import BACKEND_RNG, TrainingState


def log(message):
    print(message, file=sys.stderr, flush=True)


# Settings that change what a run trains, compared (with the mode's identity
# fields) when a run folder is resumed: a different batch size, optimizer or
# schedule would silently reinterpret the checkpoint. Settings that do not
# (log and backup cadence, --epochs/--max-steps to train further, precision,
# verbosity) may change between invocations.
RESUME_FIELDS = (
    "batch_size",
    "grad_accum",
    "optimizer",
    "lr",
    "schedule",
    "lr_decay",
    "warmup_steps",
    "weight_decay",
    "clipnorm",
    "dropout",
    "seed",
)
# The data a run trains on, recorded as an absolute path (`--data`, `--train`).
DATA_FIELDS = {"data": "data_files", "train": "train_files", "batching": "batching"}


def _data_identity(config):
    """`{recorded name: value}` of the training data settings of `config` (absolute paths where they exist)."""
    identity = {}
    for field, recorded in DATA_FIELDS.items():
        value = getattr(config, field, None)
        if value is None:
            continue
        if field != "batching" and value and Path(value).exists():
            value = str(Path(value).resolve())
        identity[recorded] = value
    return identity


@dataclasses.dataclass
class LoopPlan:
    """The shape of a run, in batches (`grad_accum` batches make one optimizer step).

    Attributes:
        steps_per_epoch: batches in one epoch of training data.
        total_batches: batches the whole run trains on.
        grad_accum: batches per optimizer step.
        backup_every: optimizer steps between resume backups.
        eval_every: optimizer steps between validations (`None`: at epoch
            ends only; validation also runs at the last batch).
        eval_steps: validation batches per evaluation (`None`: all).
        early_stop_patience: stop after this many validations without an
            improvement of more than `early_stop_min_delta` (`None`: never).
    """

    steps_per_epoch: int
    total_batches: int
    grad_accum: int = 1
    backup_every: int = 200
    eval_every: int | None = None
    eval_steps: int | None = None
    early_stop_patience: int | None = None
    early_stop_min_delta: float = 0.0

    @classmethod
    def from_config(cls, config, steps_per_epoch):
        """The plan of a run with these `TrainingOptions` and `steps_per_epoch` batches per epoch.

        The other fields (`grad_accum`, `backup_every`, `eval_every`, ...) are the config's fields of that name.
        """
        same = {
            f.name: getattr(config, f.name)
            for f in dataclasses.fields(cls)
            if f.name not in ("steps_per_epoch", "total_batches")
        }
        return cls(steps_per_epoch=steps_per_epoch, total_batches=total_batches(config, steps_per_epoch), **same)

    def _periods(self):
        periods = [self.steps_per_epoch, self.backup_every * self.grad_accum]
        if self.eval_every:
            periods.append(self.eval_every * self.grad_accum)
        return periods

    def next_boundary(self, position):
        """The batch the segment starting at `position` ends at."""
        ends = [(position // period + 1) * period for period in self._periods()]
        return min(min(ends), self.total_batches)

    def is_eval_point(self, position):
        if position == self.total_batches or position % self.steps_per_epoch == 0:
            return True
        return bool(self.eval_every) and position % (self.eval_every * self.grad_accum) == 0


def optimizer_steps(plan):
    """Optimizer steps in a whole run (what LR schedules count)."""
    return math.ceil(plan.total_batches / plan.grad_accum)


def jit_compile(config):
    """`model.compile(jit_compile=...)` for `--jit auto|on|off`."""
    return {"auto": "auto", "on": True, "off": False}[config.jit]


def total_batches(config, steps_per_epoch):
    """Batches a run trains on: `--max-steps` optimizer steps if given, else `--epochs` epochs."""
    if config.max_steps:
        return config.max_steps * config.grad_accum
    return config.epochs * steps_per_epoch


class TrainingSession:
    """One invocation of a training command on a run folder.

    Args:
        config: a `PretrainConfig` / `FinetuneConfig` (any `TrainingOptions`).
        task: `"causal_lm"` or `"classifier"` (recorded in `config.json`).

    Use it as a context manager around everything that writes: if the
    command fails before the run's first checkpoint, what it wrote is
    removed (`RunFolder.abandon`).
    """

    def __init__(self, config, task):
        self.wall_start = time.perf_counter()
        self.config = config
        self.task = task
        self.backend, self.keras = setup(config)
        self.chief = backend_lib.process_index() == 0
        self.folder = None
        self.run_dir = Path(config.run_dir)
        self.resolved = dict(config.to_dict(), task=task, backend=self.backend, **_data_identity(config))
        self.summary_extra = {}  # mode-specific figures known before the end (e.g. LoRA counts)

    # === Opening ===

    def open(self, identity_fields):
        """Opens (locks, checks or clears) the run folder; every process then sees it."""
        fields = tuple(identity_fields) + RESUME_FIELDS + tuple(_data_identity(self.config))
        self.folder = RunFolder.open(
            self.run_dir,
            self.resolved,
            restart=self.config.restart,
            chief=self.chief,
            identity_fields=fields,
        )
        backend_lib.barrier("klm-run-dir")
        return self.folder

    @property
    def resuming(self):
        return self.folder.has_checkpoint()

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        if self.folder is not None:
            if kind is not None:
                self.folder.abandon()
            self.folder.close()
        return False

    def load_tokenizer(self):
        """The tokenizer of a run being resumed, or `None`."""

        path = self.run_dir / runs.TOKENIZER_DIR
        return load_tokenizer(str(path)) if self.resuming and path.exists() else None

    def write_run_files(self, tokenizer, extra_json=None):
        """Writes `tokenizer/`, any `{name: data}` of `extra_json`, then `config.json` (chief only)."""

        self.folder.save_tokenizer(tokenizer, save_tokenizer)
        for name, data in (extra_json or {}).items():
            self.folder.write_json(name, data)
        self.folder.write_json(runs.CONFIG_FILE, self.resolved)

    def finished_summary(self, plan):
        """The summary of a run that already reached its end under `plan`, else `None`."""
        summary_path = self.run_dir / runs.SUMMARY_FILE
        state = self.folder.latest_state()
        if state is None or not summary_path.exists():
            return None
        if state.stopped_early or state.batches_done >= plan.total_batches:
            return runs.read_json(summary_path)
        return None

    def already_finished(self, plan):
        """The summary of a run that already reached its end (and says so), else `None`."""
        summary = self.finished_summary(plan)
        if summary is not None:
            how = "stopped early" if summary.get("stopped_early") else "finished"
            log(
                f"{self.run_dir} already {how} at step {summary.get('steps')} (summary.json); nothing to do. "
                "Raise --epochs or --max-steps to train further, or use --restart to start over."
            )
        return summary

    def step_logger(self, steps_per_epoch, tokens_per_step, metric, last_step_tokens=None):
        """The `StepLogger` of this run: log lines on the chief, metrics.csv and TensorBoard in the folder."""
        from klm.callbacks import StepLogger

        chief = self.chief
        return StepLogger(
            self.run_dir / "metrics.csv" if chief else None,
            steps_per_epoch,
            tokens_per_step,
            every=self.config.log_every,
            stream=self.verbose()[1],
            metric=metric,
            last_step_tokens=last_step_tokens,
            grad_accum=self.config.grad_accum,
            tensorboard_dir=self.run_dir / "tensorboard" if chief else None,
        )

    # === The loop ===

    def distribution(self):
        """The distribution scope of `--strategy` (and its description)."""
        return distribution(self.config)

    def fit(self, model, plan, make_train_data, valid_data, logger):
        """Trains `model` to the end of `plan`, resuming the folder's newest checkpoint.

        Args:
            model: a compiled, built Keras model.
            plan: a `LoopPlan`.
            make_train_data: `(epoch, offset, length) -> tf.data.Dataset` of
                `length` training batches starting at batch `offset` of
                `epoch` (0-based).
            valid_data: a `tf.data.Dataset` for validation, or `None`.
            logger: the `klm.callbacks.StepLogger`.

        Returns:
            The final `TrainingState`.
        """
        from klm.callbacks import NonFiniteLoss, RestoreGlobalRng

        keras = self.keras
        folder = self.folder
        if plan.early_stop_patience and valid_data is None:
            raise ConfigError(
                "--early-stop-patience needs validation data (--valid, a source's valid split, or "
                f"--valid-fraction). Received: --early-stop-patience={plan.early_stop_patience}"
            )
        state = self._resume(model, plan, logger)
        if state.batches_done and not state.stopped_early and state.batches_done < plan.total_batches:
            # The run goes on (e.g. more --epochs): it is no longer finished.
            if self.chief:
                (self.run_dir / runs.SUMMARY_FILE).unlink(missing_ok=True)
        verbose = self.verbose()[0] if self.chief else 0
        guard = NonFiniteLoss()
        restore_rng = RestoreGlobalRng(None)
        multi_process = backend_lib.process_count() > 1
        while state.batches_done < plan.total_batches and not state.stopped_early:
            position = state.batches_done
            epoch, offset = divmod(position, plan.steps_per_epoch)
            end = plan.next_boundary(position)
            length = end - position
            data = make_train_data(epoch, offset, length)
            if multi_process:
                # Keras shards the data per process (rebatch + shard), which
                # loses its length: never let an iterator run dry.
                data = data.repeat()
            logger.begin_segment(epoch, offset, length)
            # Every segment starts from the global generator state its backup
            # recorded, whether the run was resumed there or not: PyTorch also
            # draws from it when `fit` and `evaluate` build their data loaders.
            restore_rng.state = state.rng.get(BACKEND_RNG) if state.batches_done else None
            try:
                with folder.writing(f"{self.run_dir / 'metrics.csv'} or the TensorBoard logs"):
                    model.fit(
                        data,
                        epochs=1,
                        steps_per_epoch=length,
                        callbacks=[restore_rng, guard, logger],
                        verbose=verbose,
                        shuffle=False,
                    )
            except KeyboardInterrupt:
                raise TrainingInterrupted(
                    f"Interrupted. {folder.last_good()} Re-run the same command to resume from there."
                ) from None
            if guard.bad_batch is not None:
                raise TrainingDiverged(
                    f"The training loss became NaN/inf in epoch {epoch + 1}, near step "
                    f"{(position + guard.bad_batch + 1) // plan.grad_accum}; training stopped and nothing after "
                    f"the last good step was saved. {folder.last_good()} Lower --lr or set --clipnorm, then re-run"
                    + (
                        " (it resumes from the last good checkpoint; --restart starts over)."
                        if folder.has_checkpoint()
                        else "."
                    )
                )
            state.batches_done = end
            state.step = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
            epoch_end = end % plan.steps_per_epoch == 0
            if valid_data is not None and plan.is_eval_point(end):
                self._validate(model, plan, valid_data, logger, state, epoch_end)
            last = epoch_end or end == plan.total_batches or state.stopped_early
            state.logger = logger.state()
            if last:
                if valid_data is None:  # best.keras follows last.keras
                    folder.save_model(model, "best.keras")
                folder.save_model(model, "last.keras", state=state)
            folder.save_backup(model, state)
        if not (self.run_dir / "best.keras").exists():
            folder.save_model(model, "best.keras")
        backend_lib.barrier("klm-checkpoints-written")
        return state

    def _resume(self, model, plan, logger):
        resume = self.folder.resume(model)
        if resume is None:
            return TrainingState()
        state = resume.state
        for warning in resume.warnings:
            log(f"warning: {warning}")
        self.folder.truncate_metrics(state.batches_done, state.step)
        logger.load_state(state.logger)
        epoch, offset = divmod(state.batches_done, plan.steps_per_epoch)
        log(
            f"resuming from {resume.source}: step {state.step}, epoch {epoch + 1}, batch {offset}/"
            f"{plan.steps_per_epoch} of the epoch"
        )
        return state

    def _validate(self, model, plan, valid_data, logger, state, epoch_end):
        fault_point("eval")
        started = time.perf_counter()
        data = valid_data.take(plan.eval_steps) if plan.eval_steps else valid_data
        result = model.evaluate(data, verbose=0, return_dict=True)
        state.eval_seconds += time.perf_counter() - started
        value = float(result["loss"])
        logger.log_validation(value, result.get("accuracy"), epoch_end=epoch_end, step=state.step)
        if not math.isfinite(value):
            return
        if state.best_value is None or value < state.best_value - plan.early_stop_min_delta:
            state.best_value, state.best_step = value, state.step
            state.evals_without_improvement = 0
            self.folder.save_model(model, "best.keras")
            self.folder.write_json(BEST_FILE, {"monitor": "val_loss", "value": value, "step": state.step})
            return
        state.evals_without_improvement += 1
        patience = plan.early_stop_patience
        if patience and state.evals_without_improvement >= patience:
            state.stopped_early = True
            log(
                f"early stopping at step {state.step}: no validation improvement above "
                f"{plan.early_stop_min_delta} in {patience} evaluations; best val_loss {state.best_value:.4f} "
                f"at step {state.best_step} (best.keras)"
            )

    # === Finishing ===

    def verbose(self):
        """(keras fit verbose, stream for plain log lines)."""
        mode = self.config.verbose
        if mode == "auto":
            mode = "bar" if sys.stdout.isatty() else "lines"
        if not self.chief:
            mode = "quiet"
        return {"bar": (1, None), "lines": (0, sys.stdout), "quiet": (0, None)}[mode]

    def finish(self, model, state, logger, extra, metric):
        """Writes curves.png and summary.json; returns the summary."""
        from klm.callbacks import plot_curves

        summary = {
            "backend": self.backend,
            "precision": self.config.precision,
            "steps": state.step,
            "batches": state.batches_done,
            "stopped_early": state.stopped_early,
            "best_step": state.best_step,
            "train_seconds": round(logger.train_seconds, 3),
            "compile_seconds": round(logger.compile_seconds, 3),
            "eval_seconds": round(state.eval_seconds, 3),
            "wall_seconds": round(time.perf_counter() - self.wall_start, 3),
            "train_tokens_per_second": round(logger.tokens_per_second, 1),
            # Same as train_tokens_per_second (kept for readers of older summaries).
            "tokens_per_second": round(logger.tokens_per_second, 1),
            "final_train_loss": logger.last_loss,
            "device": backend_lib.accelerator_name(),
            "parameters": int(model.count_params()),
            **backend_lib.peak_memory(),  # peak_device_memory_mb (None on a CPU), peak_host_rss_mb
        }
        summary.update(self.summary_extra)
        summary.update(extra)
        if self.chief:
            with self.folder.writing(self.run_dir / "curves.png"):
                plot_curves(self.run_dir / "metrics.csv", self.run_dir / "curves.png", metric=metric)
            self.folder.write_json(runs.SUMMARY_FILE, summary)
        return summary


def distribution(config):
    """`(scope, description)` for `config.strategy` / `config.mesh`, with the per-replica clipping note."""
    try:
        scope, description = backend_lib.distribution_scope(config.strategy, config.mesh)
    except backend_lib.BackendError as e:
        raise ConfigError(str(e)) from None
    if backend_lib.clips_per_replica(scope) and config.clipnorm:
        log(
            "note: under tf.distribute, Keras 3's TensorFlow optimizer clips each replica's gradients "
            "before summing them, so --clipnorm acts per replica, not on the global gradient. Use "
            "--backend jax for exact global clipping, or --clipnorm 0."
        )
    return scope, description


def setup(config):
    """Backend, devices, cluster, seed, precision; returns `(backend, keras)`."""
    backend = backend_lib.use_backend(config.backend)
    backend_lib.reuse_freed_memory()
    try:
        backend_lib.check_steps_per_execution(config.steps_per_execution, backend)
        backend_lib.configure_cpu_devices(config.cpu_devices, backend)
        import keras

        backend_lib.initialize_cluster(config.coordinator, config.num_processes, config.process_id)
    except backend_lib.BackendError as e:
        raise ConfigError(str(e)) from None
    backend_lib.set_seed(config.seed)
    keras.config.set_dtype_policy(config.precision)
    return backend, keras
