"""Keras callbacks that make a klm run folder: logs, checkpoints, resume, curves."""

import csv
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import keras

from klm import runs


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore` whose files survive a kill at any moment.

    Keras writes `latest.weights.h5` in place, so a SIGKILL during the write
    leaves a truncated file that cannot be restored. This subclass writes the
    weights and the metadata to temporary files and renames them into place
    (an atomic operation on POSIX file systems), and never backs up a model
    whose loss has become NaN/inf. With `write=False` (processes other than
    0 in a multi-process run) it only restores.
    """

    def __init__(self, backup_dir, write=True, **kwargs):
        super().__init__(backup_dir, **kwargs)
        self.write = write

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            return
        super().on_train_batch_end(batch, logs)

    def _save_model(self):
        if not self.write:
            # Join the collective read of the weights, keep nothing.
            with tempfile.TemporaryDirectory(prefix="klm-scratch-") as scratch:
                self.model.save_weights(os.path.join(scratch, "w.weights.h5"))
            return
        os.makedirs(self.backup_dir, exist_ok=True)
        with runs.atomic_path(self._weights_path, ".weights.h5") as tmp:
            self.model.save_weights(tmp, overwrite=True)
        metadata = {"epoch": self._current_epoch, "batch": self._last_batch_seen}
        runs.write_json(self._training_metadata_path, metadata)


class NonFiniteLoss(keras.callbacks.Callback):
    """Stops training as soon as the loss is NaN or infinite, and remembers where."""

    def __init__(self):
        super().__init__()
        self.bad_step = None

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.bad_step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
            self.model.stop_training = True


class MaxSteps(keras.callbacks.Callback):
    """Ends training once the optimizer has taken `max_steps` steps in total."""

    def __init__(self, max_steps):
        super().__init__()
        self.max_steps = max_steps

    def _steps(self):
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def on_train_begin(self, logs=None):
        if self._steps() >= self.max_steps:
            self.model.stop_training = True

    def on_train_batch_end(self, batch, logs=None):
        if self._steps() >= self.max_steps:
            self.model.stop_training = True


class StepLogger(keras.callbacks.Callback):
    """Logs every N steps like the seed, and writes `metrics.csv`.

    A line reads:
    `| epoch   1 |   200/ 2983 batches | lr 5.00 | ms/batch 123.45 | loss  7.12 | ppl  1234.56 | tok/s  5678`
    The loss is the mean over the last N batches (the seed's `cur_loss`),
    recovered exactly from Keras's running epoch mean.

    Args:
        metrics_path: CSV file to append rows to, or `None`.
        steps_per_epoch: batches in an epoch (for the `x/y` column).
        tokens_per_step: tokens in one global batch.
        every: log interval in steps.
        stream: where lines go (`None` silences them: the progress bar is on).
        metric: `"ppl"` for language models, `"accuracy"` for classifiers.
        last_step_tokens: tokens in the last step of an epoch when it is
            shorter (the seed's contiguous batching); `None`: a full step.
    """

    FIELDS = ["time", "epoch", "step", "lr", "loss", "ppl", "accuracy", "ms_per_batch", "tokens_per_second",
              "val_loss", "val_ppl", "val_accuracy"]

    def __init__(self, metrics_path, steps_per_epoch, tokens_per_step, every=200, stream=sys.stdout, metric="ppl",
                 last_step_tokens=None):
        super().__init__()
        self.metrics_path = Path(metrics_path) if metrics_path else None
        self.steps_per_epoch = steps_per_epoch
        self.tokens_per_step = tokens_per_step
        self.last_step_tokens = tokens_per_step if last_step_tokens is None else last_step_tokens
        self.tokens_run = 0
        self.every = every
        self.stream = stream
        self.metric = metric
        self.train_seconds = 0.0
        self.steps_run = 0
        self.last_loss = None

    def _write_row(self, row):
        if self.metrics_path is None:
            return
        new = not self.metrics_path.exists()
        with open(self.metrics_path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.FIELDS)
            if new:
                writer.writeheader()
            writer.writerow({k: row.get(k, "") for k in self.FIELDS})

    def _lr(self):
        """The learning rate the last step used (as the seed logs it).

        `optimizer.learning_rate` is the schedule at the *next* step: at the end
        of an epoch with staircase decay it would already show the decayed rate.
        """
        optimizer = self.model.optimizer
        schedule = getattr(optimizer, "_learning_rate", None)
        if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
            last_step = max(int(keras.ops.convert_to_numpy(optimizer.iterations)) - 1, 0)
            return float(keras.ops.convert_to_numpy(schedule(last_step)))
        return float(keras.ops.convert_to_numpy(optimizer.learning_rate))

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.window_start = time.perf_counter()
        self.epoch_start = self.window_start
        self.window_sum_at_start = 0.0
        self.window_first_batch = 0
        self.window_tokens = 0
        self.seen = 0  # steps of this epoch run so far

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        # With steps_per_execution > 1 Keras calls this once per execution, with
        # `batch` = first step + steps_per_execution - 1 (past the epoch's end
        # on the last, shorter execution): count the steps actually run.
        seen = min(batch + 1, self.steps_per_epoch)
        new_steps = seen - self.seen
        if new_steps <= 0:
            return
        self.steps_run += new_steps
        step_tokens = self.tokens_per_step * new_steps
        if seen == self.steps_per_epoch:
            step_tokens += self.last_step_tokens - self.tokens_per_step
        self.tokens_run += step_tokens
        self.window_tokens += step_tokens
        crossed = seen // self.every > self.seen // self.every
        self.seen = seen
        if not crossed and seen != self.steps_per_epoch:
            return
        # Keras reports the running mean over the epoch; turn it into the mean
        # over this window: (mean_k * k - mean_j * j) / (k - j).
        mean_loss = float(logs.get("loss", float("nan")))
        running_sum = mean_loss * seen
        count = seen - self.window_first_batch
        window_loss = (running_sum - self.window_sum_at_start) / max(count, 1)
        now = time.perf_counter()
        elapsed = now - self.window_start
        ms = elapsed * 1000 / max(count, 1)
        tokens_per_second = self.window_tokens / elapsed if elapsed > 0 else 0.0
        step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        row = {
            "time": round(time.time(), 3), "epoch": self.epoch + 1, "step": step, "lr": self._lr(),
            "loss": window_loss, "ms_per_batch": ms, "tokens_per_second": tokens_per_second,
        }
        if self.metric == "ppl":
            row["ppl"] = math.exp(min(window_loss, 700))
            tail = f"ppl {row['ppl']:8.2f} | tok/s {tokens_per_second:7.0f}"
        else:
            row["accuracy"] = float(logs.get("accuracy", float("nan")))
            tail = f"acc {row['accuracy']:6.4f} | tok/s {tokens_per_second:7.0f}"
        self._write_row(row)
        self.last_loss = window_loss
        if self.stream is not None:
            print(
                f"| epoch {self.epoch + 1:3d} | {seen:5d}/{self.steps_per_epoch:5d} batches | "
                f"lr {_format_lr(row['lr'])} | ms/batch {ms:6.2f} | loss {window_loss:5.2f} | {tail}",
                file=self.stream,
                flush=True,
            )
        self.window_start = now
        self.window_sum_at_start = running_sum
        self.window_first_batch = seen
        self.window_tokens = 0

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self.train_seconds += time.perf_counter() - self.epoch_start
        row = {"time": round(time.time(), 3), "epoch": epoch + 1,
               "step": int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))}
        if "val_loss" in logs:
            row["val_loss"] = float(logs["val_loss"])
            if self.metric == "ppl":
                row["val_ppl"] = math.exp(min(row["val_loss"], 700))
                text = f"valid loss {row['val_loss']:5.2f} | valid ppl {row['val_ppl']:8.2f}"
            else:
                row["val_accuracy"] = float(logs.get("val_accuracy", float("nan")))
                text = f"valid loss {row['val_loss']:5.3f} | valid acc {row['val_accuracy']:6.4f}"
            self._write_row(row)
            if self.stream is not None:
                line = "-" * 89
                print(f"{line}\n| end of epoch {epoch + 1:3d} | time: {self.train_seconds:7.2f}s | {text}\n{line}",
                      file=self.stream, flush=True)


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves `last.keras` every epoch and `best.keras` when validation improves.

    Both are written to a temporary file and renamed. The best score is kept
    in `best.json` so a resumed run only replaces `best.keras` with a better
    model. With no validation data, `best.keras` follows `last.keras`.

    Args:
        run_dir: the run folder.
        monitor: log key to minimise (e.g. `"val_loss"`).
        guard: a `NonFiniteLoss` callback; nothing is saved after a NaN.
        write: `False` on processes other than 0 of a multi-process run.
    """

    def __init__(self, run_dir, monitor="val_loss", guard=None, write=True):
        super().__init__()
        self.write = write
        self.run_dir = Path(run_dir)
        self.monitor = monitor
        self.guard = guard
        best_file = self.run_dir / "best.json"
        self.best = runs.read_json(best_file)["value"] if best_file.exists() else float("inf")

    def save_last(self):
        runs.save_model(self.model, self.run_dir / "last.keras", write=self.write)

    def on_epoch_end(self, epoch, logs=None):
        if self.guard is not None and self.guard.bad_step is not None:
            return
        self.save_last()
        value = (logs or {}).get(self.monitor)
        if value is None:
            runs.save_model(self.model, self.run_dir / "best.keras", write=self.write)
            return
        value = float(value)
        if math.isfinite(value) and value < self.best:
            self.best = value
            runs.save_model(self.model, self.run_dir / "best.keras", write=self.write)
            if self.write:
                runs.write_json(
                    self.run_dir / "best.json", {"monitor": self.monitor, "value": value, "epoch": epoch + 1}
                )


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
