"""Keras callbacks of klm's training loop: log lines, metrics.csv, TensorBoard, NaN guard; curves."""

import csv
import math
import os
import sys
import time
from pathlib import Path

import keras

from klm import backend, runs
from klm.metrics import perplexity


class NonFiniteLoss(keras.callbacks.Callback):
    """Stops training as soon as the loss is NaN or infinite, and remembers the batch."""

    def __init__(self):
        super().__init__()
        self.bad_batch = None

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.bad_batch = batch
            self.model.stop_training = True


class RestoreGlobalRng(keras.callbacks.Callback):
    """Sets the backend's global generator to `state` just before the next batch trains.

    klm's training loop arms it with the state a backup recorded at the start
    of every `fit` call. Not earlier than the first batch: on PyTorch, `fit`
    draws from the global generator while it builds the train step (first
    call) and its data loader (every call), and those draws must not shift
    the dropout masks of a resumed run.
    """

    def __init__(self, state):
        super().__init__()
        self.state = state

    def on_train_batch_begin(self, batch, logs=None):
        if self.state is not None:
            backend.set_global_rng_state(self.state)
            self.state = None


class StepLogger(keras.callbacks.Callback):
    """Logs every N batches like the seed, and writes `metrics.csv` and TensorBoard scalars.

    A line reads:
    `| epoch   1 |   200/ 2983 batches | lr 5.00 | ms/batch 123.45 | loss  7.12 | ppl  1234.56 | tok/s  5678`
    The loss is the mean over the last N batches (the reference's `cur_loss`),
    recovered exactly from Keras's running mean.

    Used as a plain callback of `model.fit` (each fit epoch is a data epoch),
    or driven by klm's training loop, which runs an epoch as several `fit`
    calls ("segments": between backups and evaluations) and calls
    `begin_segment` before each. Its open window and counters are part of a
    run's resume state (`state()` / `load_state()`), so a resumed run logs
    the rows the uninterrupted run would.

    Timing counts only training batches (data loading included; evaluation
    and checkpoint writes excluded). The first execution of the process,
    which traces and compiles the step, is counted apart as
    `compile_seconds`, so `tokens_per_second` is the steady training rate.

    Args:
        metrics_path: CSV file to append rows to, or `None`.
        steps_per_epoch: batches in an epoch (for the `x/y` column).
        tokens_per_step: tokens in one global batch.
        every: log interval in batches.
        stream: where lines go (`None` silences them: the progress bar is on).
        metric: `"ppl"` for language models, `"accuracy"` for classifiers.
        last_step_tokens: tokens in the last batch of an epoch when it is
            shorter (the reference's contiguous batching); `None`: a full batch.
        grad_accum: batches per optimizer step (the `step` column counts
            optimizer steps).
        tensorboard_dir: folder for TensorBoard event files, or `None`.
    """

    FIELDS = [
        "time",
        "epoch",
        "step",
        "batch",
        "lr",
        "loss",
        "ppl",
        "accuracy",
        "ms_per_batch",
        "tokens_per_second",
        "val_loss",
        "val_ppl",
        "val_accuracy",
    ]

    def __init__(
        self,
        metrics_path,
        steps_per_epoch,
        tokens_per_step,
        every=200,
        stream=sys.stdout,
        metric="ppl",
        last_step_tokens=None,
        grad_accum=1,
        tensorboard_dir=None,
    ):
        super().__init__()
        self.metrics_path = Path(metrics_path) if metrics_path else None
        self.steps_per_epoch = steps_per_epoch
        self.tokens_per_step = tokens_per_step
        self.last_step_tokens = tokens_per_step if last_step_tokens is None else last_step_tokens
        self.every = every
        self.stream = stream
        self.metric = metric
        self.grad_accum = grad_accum
        self.tensorboard_dir = tensorboard_dir
        self._writer = None
        self._driven = False
        self.epoch, self.offset, self.length = 0, 0, steps_per_epoch
        self.window = {"loss_sum": 0.0, "batches": 0, "tokens": 0, "seconds": 0.0}
        self.tokens_run = 0
        self.timed_tokens = 0
        self.train_seconds = 0.0
        self.compile_seconds = 0.0
        self.last_loss = None
        self._compiled = False
        self._mark = None
        self._seg_seen = 0
        self._seg_sum = 0.0
        self._epoch_wall_start = time.perf_counter()

    # --- resume state ---

    def state(self):
        return {
            "window": dict(self.window),
            "tokens_run": self.tokens_run,
            "timed_tokens": self.timed_tokens,
            "train_seconds": self.train_seconds,
            "compile_seconds": self.compile_seconds,
            "last_loss": self.last_loss,
        }

    def load_state(self, state):
        if not state:
            return
        self.window = dict(state["window"])
        self.tokens_run = int(state["tokens_run"])
        self.timed_tokens = int(state["timed_tokens"])
        self.train_seconds = float(state["train_seconds"])
        self.compile_seconds = float(state["compile_seconds"])
        self.last_loss = state.get("last_loss")

    @property
    def tokens_per_second(self):
        """Training tokens per second of steady-state steps (compilation excluded)."""
        return self.timed_tokens / self.train_seconds if self.train_seconds > 0 else 0.0

    # --- segments ---

    def begin_segment(self, epoch, offset, length):
        """The next `fit` call runs batches `offset .. offset + length` of `epoch` (0-based)."""
        self._driven = True
        if offset == 0 or epoch != self.epoch:
            self._epoch_wall_start = time.perf_counter()
        self.epoch, self.offset, self.length = epoch, offset, length

    def on_train_begin(self, logs=None):
        self._mark = None

    def on_epoch_begin(self, epoch, logs=None):
        if not self._driven:  # plain model.fit: each fit epoch is a whole data epoch
            self.epoch, self.offset, self.length = epoch, 0, self.steps_per_epoch
            self._epoch_wall_start = time.perf_counter()
        self._seg_seen = 0
        self._seg_sum = 0.0

    def on_train_batch_begin(self, batch, logs=None):
        if self._mark is None:
            self._mark = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        # With steps_per_execution > 1 Keras calls this once per execution, with
        # `batch` = first batch + steps_per_execution - 1 (past the segment's
        # end on the last, shorter execution): count the batches actually run.
        seen = min(batch + 1, self.length)
        new = seen - self._seg_seen
        if new <= 0:
            return
        now = time.perf_counter()
        elapsed = now - (self._mark if self._mark is not None else now)
        self._mark = now
        # Keras reports the running mean over this fit call; its increments
        # give the summed loss of the new batches.
        seg_sum = float(logs.get("loss", float("nan"))) * seen
        loss_sum, self._seg_sum = seg_sum - self._seg_sum, seg_sum
        before, after = self.offset + self._seg_seen, self.offset + seen
        self._seg_seen = seen
        tokens = self.tokens_per_step * new
        if after == self.steps_per_epoch:
            tokens += self.last_step_tokens - self.tokens_per_step
        self.tokens_run += tokens
        if self._compiled:
            self.train_seconds += elapsed
            self.timed_tokens += tokens
        else:  # the first execution traces and compiles the step
            self.compile_seconds += elapsed
            self._compiled = True
        window = self.window
        window["loss_sum"] += loss_sum
        window["batches"] += new
        window["tokens"] += tokens
        window["seconds"] += elapsed
        if after // self.every == before // self.every and after != self.steps_per_epoch:
            return
        window_loss = window["loss_sum"] / max(window["batches"], 1)
        ms = window["seconds"] * 1000 / max(window["batches"], 1)
        tokens_per_second = window["tokens"] / window["seconds"] if window["seconds"] > 0 else 0.0
        step = self._step(after)
        lr = self._lr(step)
        row = {
            "time": round(time.time(), 3),
            "epoch": self.epoch + 1,
            "step": step,
            "batch": self.epoch * self.steps_per_epoch + after,
            "lr": lr,
            "loss": window_loss,
            "ms_per_batch": ms,
            "tokens_per_second": tokens_per_second,
        }
        if self.metric == "ppl":
            row["ppl"] = perplexity(window_loss)
            tail = f"ppl {row['ppl']:8.2f} | tok/s {tokens_per_second:7.0f}"
        else:
            row["accuracy"] = float(logs.get("accuracy", float("nan")))
            tail = f"acc {row['accuracy']:6.4f} | tok/s {tokens_per_second:7.0f}"
        self._write_row(row)
        self._scalars(
            step,
            {
                "train/loss": window_loss,
                "train/lr": lr,
                "train/tokens_per_second": tokens_per_second,
                **({"train/ppl": row["ppl"]} if "ppl" in row else {}),
            },
        )
        self.last_loss = window_loss
        if self.stream is not None:
            print(
                f"| epoch {self.epoch + 1:3d} | {after:5d}/{self.steps_per_epoch:5d} batches | "
                f"lr {_format_lr(lr)} | ms/batch {ms:6.2f} | loss {window_loss:5.2f} | {tail}",
                file=self.stream,
                flush=True,
            )
        self.window = {"loss_sum": 0.0, "batches": 0, "tokens": 0, "seconds": 0.0}

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if not self._driven and "val_loss" in logs:  # plain model.fit with validation_data
            self.log_validation(
                float(logs["val_loss"]),
                logs.get("val_accuracy"),
                epoch_end=True,
                step=self._step(self.offset + self._seg_seen),
            )

    # --- validation ---

    def log_validation(self, val_loss, val_accuracy=None, epoch_end=False, step=None):
        """Writes a validation row (and line) at `step`; `epoch_end` prints the reference's block."""
        row = {
            "time": round(time.time(), 3),
            "epoch": self.epoch + 1,
            "step": step,
            "batch": self.epoch * self.steps_per_epoch + self.offset + self._seg_seen,
            "val_loss": val_loss,
        }
        if self.metric == "ppl":
            row["val_ppl"] = perplexity(val_loss)
            text = f"valid loss {val_loss:5.2f} | valid ppl {row['val_ppl']:8.2f}"
            self._scalars(step, {"valid/loss": val_loss, "valid/ppl": row["val_ppl"]})
        else:
            row["val_accuracy"] = float(val_accuracy if val_accuracy is not None else float("nan"))
            text = f"valid loss {val_loss:5.3f} | valid acc {row['val_accuracy']:6.4f}"
            self._scalars(step, {"valid/loss": val_loss, "valid/accuracy": row["val_accuracy"]})
        self._write_row(row)
        if self.stream is None:
            return
        if epoch_end:
            line = "-" * 89
            elapsed = time.perf_counter() - self._epoch_wall_start
            print(
                f"{line}\n| end of epoch {self.epoch + 1:3d} | time: {elapsed:7.2f}s | {text}\n{line}",
                file=self.stream,
                flush=True,
            )
        else:
            print(f"| step {step:6d} | {text}", file=self.stream, flush=True)

    # --- helpers ---

    def _step(self, position_in_epoch):
        return (self.epoch * self.steps_per_epoch + position_in_epoch) // self.grad_accum

    def _lr(self, step):
        """The learning rate the last step used (as the reference logs it).

        `optimizer.learning_rate` is the schedule at the *next* step: at the end
        of an epoch with staircase decay it would already show the decayed rate.
        """
        optimizer = self.model.optimizer
        schedule = getattr(optimizer, "_learning_rate", None)
        if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
            return float(keras.ops.convert_to_numpy(schedule(max(step - 1, 0))))
        return float(keras.ops.convert_to_numpy(optimizer.learning_rate))

    def _write_row(self, row):
        if self.metrics_path is None:
            return
        new = not self.metrics_path.exists()
        # O_NOFOLLOW: never append through a symbolic link put in the file's place.
        fd = os.open(self.metrics_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.FIELDS)
            if new:
                writer.writeheader()
            writer.writerow({k: row.get(k, "") for k in self.FIELDS})

    def _scalars(self, step, values):
        if self.tensorboard_dir is None or step is None:
            return
        import tensorflow as tf

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(str(self.tensorboard_dir))
        with self._writer.as_default():
            for name, value in values.items():
                tf.summary.scalar(name, value, step=step)
        self._writer.flush()


def plot_curves(metrics_csv, out_png, metric="ppl"):
    """Draws training/validation loss and perplexity (or accuracy) to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(csv.DictReader(open(metrics_csv))) if Path(metrics_csv).exists() else []

    def series(key):
        points = [(int(r["step"]), float(r[key])) for r in rows if r.get(key) not in (None, "")]
        return [p[0] for p in points], [p[1] for p in points]

    second = "ppl" if metric == "ppl" else "accuracy"
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, title in ((axes[0], "loss", "loss"), (axes[1], second, second)):
        x, y = series(key)
        ax.plot(x, y, label=f"train {title}")
        vx, vy = series(f"val_{key}")
        ax.plot(vx, vy, "o-", label=f"valid {title}")
        ax.set_xlabel("step")
        ax.set_title(title)
        if key == "ppl" and y and max(y + vy) / max(min(y + vy), 1e-9) > 20:
            ax.set_yscale("log")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with runs.atomic_path(out_png, ".png") as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


def _format_lr(lr):
    # The seed prints `lr 5.00`; tiny modern learning rates need exponents.
    return f"{lr:02.2f}" if lr >= 0.01 else f"{lr:.2e}"
