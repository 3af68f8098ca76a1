"""`RunFolder`: one training run's folder, from its first file to `summary.json`.

Every training mode (pretraining, classifier fine-tuning, and those to come)
goes through the same life:

    open      lock the folder (one process trains in it), clean up temporary
              files a kill left behind, check that an existing run is the
              same model (`identity`), or start over (`--restart`, or a
              folder whose run never reached its first checkpoint)
    write     config.json, tokenizer/, labels.json (the chief process only)
    resume    restore the newest intact backup generation (weights,
              optimizer, dropout RNG, position in the data), falling back
              to the previous generation, then to last.keras, with a warning
              that says what was lost
    save      backups (two generations, each checksummed before it replaces
              the older), last.keras, best.keras
    finish    summary.json (a run with it is finished)

A run counts as started once its first checkpoint exists. If the command
fails before that, `abandon()` removes what it wrote, so a corrected command
starts cleanly instead of "resuming" a run built from bad input.

klm writes only into a folder it made, and deletes only names it generated:
a run folder carries klm's marker file (`.klm-run`, written when klm takes a
new or empty folder), and every clean-up (`--restart`, a start that never
reached its checkpoint, temporary files a kill left) removes only the names
in `OWNED_NAMES` and klm's own temporary files. A folder without the marker
is checked before anything is written to it: one that holds anything is
refused (a file name such as `config.json` proves nothing: a user or another
tool may have written it), except a run folder written by klm before the
marker existed (klm's `config.json` and a checkpoint), which is adopted.

Writes that fail (disk full, read-only folder) raise `RunDirError` naming the
file and the last good checkpoint, which the atomic writes keep intact.
"""

import contextlib
import csv
import dataclasses
import errno
import io
import json
import os
import re
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from klm import locks, runs
from klm.checksums import sha256_of_file
from klm.errors import RunDirError
from klm.tasks import model_families
from klm.training.state import TrainingState, capture_rng, restore_rng

LOCK_FILE = ".klm.lock"
BACKUP_DIR = "backup"
LAST_STATE_FILE = "last_state.json"
BEST_FILE = "best.json"
METRICS_FILE = "metrics.csv"
BACKUP_GENERATIONS = 2
# Files a run writes; a symlink in their place is refused (it would write elsewhere).
_WRITTEN = (
    runs.CONFIG_FILE,
    runs.SUMMARY_FILE,
    runs.LABELS_FILE,
    METRICS_FILE,
    "last.keras",
    "best.keras",
    BEST_FILE,
    LAST_STATE_FILE,
    "curves.png",
)


def _log(message):
    print(message, file=sys.stderr, flush=True)


_FAULT_COUNTS = {}


def fault_point(name):
    """Fault-injection hook: `KLM_FAULT_POINT=NAME:N` SIGKILLs this process the N-th time it passes NAME.

    The reliability tests use it to kill a run at exact moments (between the
    two files of a backup, during an evaluation) that a timer could not hit
    reliably. Without the variable it does nothing.
    """
    spec = os.environ.get("KLM_FAULT_POINT")
    if not spec:
        return
    target, _, count = spec.partition(":")
    if target != name:
        return
    _FAULT_COUNTS[name] = _FAULT_COUNTS.get(name, 0) + 1
    if _FAULT_COUNTS[name] == int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)


MARKER_FILE = ".klm-run"
# Everything a run writes into its folder. Clean-ups delete these names and
# nothing else, so a user's own files in a run folder survive `--restart`.
OWNED_NAMES = frozenset(_WRITTEN + (runs.TOKENIZER_DIR, BACKUP_DIR, "tensorboard", MARKER_FILE, LOCK_FILE))
# `runs.atomic_path` names its temporary files ".<name>.<8 random chars>.tmp<suffix>".
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp")
_BACKUP_NAME = re.compile(r"^state-\d+\.(json|weights\.h5|lora\.npz)$")


def _is_temp(name, in_backup=False):
    """Whether `name` is a temporary file klm's atomic writes made (never a user's `.notes.tmp`)."""
    match = _TEMP_NAME.match(name)
    if not match:
        return False
    base = match.group("name")
    return bool(_BACKUP_NAME.match(base)) if in_backup else base in OWNED_NAMES


def _is_owned(name):
    return name in OWNED_NAMES or _is_temp(name)


@dataclasses.dataclass
class ResumePoint:
    """What a run resumes from: the state and a description of its source."""

    state: TrainingState
    source: str
    warnings: list


class RunFolder:
    """The folder of one training run (see the module docstring).

    Args:
        path: the run folder (`--run-dir`).
        chief: only the chief process (process 0) writes files; the others
            of a multi-process run read the same folder and join the
            collective saves.

    Example:
    ```python
    folder = RunFolder.open("runs/lm", identity={"task": "causal_lm", "preset": "tiny"})
    try:
        ...  # write config and tokenizer, build the model
        resume = folder.resume(model)
        ...  # train, folder.save_backup(model, state) ...
    except BaseException:
        folder.abandon()  # removes what it wrote if no checkpoint exists yet
        raise
    ```
    """

    def __init__(self, path, chief=True):
        self.path = Path(path)
        self.chief = chief
        self.created = False
        self._lock_fd = None

    # === Opening ===

    @classmethod
    def open(cls, path, identity, restart=False, chief=True, identity_fields=None):
        """Locks and checks (or creates) a run folder. Only the chief changes anything.

        Args:
            path: the run folder.
            identity: the resolved config; `identity_fields` of it must match
                an existing run's `config.json`.
            restart: clear an existing run first (`--restart`).
            chief: `False` on processes other than 0 (they only read).
            identity_fields: keys compared with an existing run.

        Raises:
            RunDirError: a file where the folder should be, a folder that is
                not a klm run folder, a run of another model, or a folder in
                use by another process.
        """
        folder = cls(path, chief)
        if chief:
            try:
                folder._open_as_chief(identity, restart, identity_fields or ())
            except BaseException:
                folder.close()  # a refused folder is not held
                raise
        return folder

    def _open_as_chief(self, identity, restart, identity_fields):
        path = self.path
        flag = f"--run-dir={str(path)!r}"
        if path.exists() and not path.is_dir():
            raise RunDirError(f"Expected --run-dir to be a folder, but it is a file. Received: {flag}")
        # Decide whether this is klm's folder before touching anything in it:
        # no lock file, no temp-file sweep, no marker in a folder of the user's.
        self._check_is_klm_folder(restart, flag)
        self.created = not path.exists()
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunDirError(f"Cannot create the run folder {path}: {e.strerror or e}. Received: {flag}") from e
        self._lock()
        self._remove_temp_files()
        for name in _WRITTEN:
            if (path / name).is_symlink():
                raise RunDirError(
                    f"{path / name} is a symbolic link; klm writes this file and will not write through a link "
                    f"(it could overwrite a file elsewhere). Remove the link. Received: {flag}"
                )
        if not (path / MARKER_FILE).exists():
            with self.writing(path / MARKER_FILE):
                runs.write_json(path / MARKER_FILE, {"format": "klm-run", "format_version": 1})
        config_path = path / runs.CONFIG_FILE
        if restart and self._owned_contents():
            _log(f"--restart: deleting the run in {path}{self._kept_note()}")
            self._clear()
            return
        if not config_path.exists():
            return
        if not self.has_checkpoint():
            _log(
                f"note: {path} holds a run that never reached its first checkpoint (a start that failed or was "
                f"killed); starting it over{self._kept_note()}."
            )
            self._clear()
            return
        try:
            previous = runs.read_json(config_path)
        except (OSError, ValueError) as e:
            raise RunDirError(
                f"{config_path} is unreadable ({e}); it records the run's settings. Restore it, or start over with "
                f"--restart (deletes the run). Received: {flag}"
            ) from e
        for field in identity_fields:
            if field not in previous and field not in IDENTITY_FIELDS_SINCE_START:
                continue  # a setting recorded only by newer klm versions
            if previous.get(field) != identity.get(field):
                shown = _setting(field)
                raise RunDirError(
                    f"{path} holds a run with {shown}={previous.get(field)!r}, but this command asks for "
                    f"{shown}={identity.get(field)!r}: resuming would silently change what the run trains. Use the "
                    f"run's setting, another --run-dir, or --restart to start over (deletes the old run). "
                    f"Received: {flag}"
                )

    def _check_is_klm_folder(self, restart, flag):
        """Refuses, before anything is written, a folder that klm did not make (see the module docstring)."""
        path = self.path
        if not path.is_dir() or (path / MARKER_FILE).is_file():
            return
        entries = [entry for entry in path.iterdir() if entry.name != LOCK_FILE and not _is_temp(entry.name)]
        if not entries or _is_legacy_run(path):
            return
        names = ", ".join(sorted(entry.name for entry in entries)[:5]) + (", ..." if len(entries) > 5 else "")
        raise RunDirError(
            f"{path} is not empty and is not a klm run folder (it has no {MARKER_FILE} marker; it holds {names}). "
            f"klm writes only into a new or empty folder or one of its own runs, and will not write into "
            f"it{' or delete anything in it (--restart)' if restart else ''}. Choose another --run-dir. "
            f"Received: {flag}"
        )

    def _kept_note(self):
        foreign = sorted(entry.name for entry in self._contents() if not _is_owned(entry.name))
        return f" (keeping files klm did not write: {', '.join(foreign)})" if foreign else ""

    def _lock(self):
        """An OS lock on `.klm.lock`, held until this process exits (any exit, SIGKILL included)."""
        lock_path = self.path / LOCK_FILE

        def in_use(holder):
            return (
                f"{self.path} is in use: klm process {holder} is training in it (it holds {lock_path}). Wait for "
                f"it to finish, or stop it, then re-run to resume; or choose another --run-dir. "
                f"Received: --run-dir={str(self.path)!r}"
            )

        with self.writing(lock_path):
            try:
                self._lock_fd = locks.acquire(lock_path, in_use)
            except locks.FolderInUse as e:
                raise RunDirError(str(e)) from None

    def close(self):
        """Releases the lock (also released when the process exits)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _contents(self):
        return [p for p in self.path.iterdir() if p.name != LOCK_FILE] if self.path.is_dir() else []

    def _owned_contents(self):
        return [p for p in self._contents() if _is_owned(p.name) and p.name != MARKER_FILE]

    def _clear(self):
        """Deletes what runs write (`OWNED_NAMES`), never other files; the marker and lock stay."""
        for entry in self._owned_contents():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    def _remove_temp_files(self):
        for folder, in_backup in ((self.path, False), (self.path / BACKUP_DIR, True)):
            if not folder.is_dir():
                continue
            for entry in folder.iterdir():
                if _is_temp(entry.name, in_backup=in_backup):
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.rmtree(entry, ignore_errors=True)
                    else:
                        entry.unlink(missing_ok=True)
        backup = self.path / BACKUP_DIR
        if backup.is_dir():
            # Weights whose state file was never written (killed in between).
            committed = {p.name[: -len(".json")] for p in backup.glob("state-*.json")}
            for suffix in (".weights.h5", ".lora.npz"):
                for weights in backup.glob(f"state-*{suffix}"):
                    if weights.name[: -len(suffix)] not in committed:
                        weights.unlink(missing_ok=True)

    def has_checkpoint(self):
        """Whether the run has started: a backup generation or `last.keras` exists."""
        return any((self.path / BACKUP_DIR).glob("state-*.json")) or (self.path / "last.keras").exists()

    def abandon(self):
        """After a failure: removes what this attempt wrote if the run never started.

        A folder this process created is removed with it; a run that has a
        checkpoint is left alone (it resumes).
        """
        if not self.chief or self._lock_fd is None or self.has_checkpoint():
            return
        with contextlib.suppress(OSError):
            self._clear()
            if not self._contents() or self._contents() == [self.path / MARKER_FILE]:
                # Nothing of the user's is here: leave the folder as it was found.
                (self.path / MARKER_FILE).unlink(missing_ok=True)
                (self.path / LOCK_FILE).unlink(missing_ok=True)
                if self.created:
                    self.path.rmdir()

    # === Writing ===

    @contextlib.contextmanager
    def writing(self, what):
        """Turns an `OSError` while writing `what` into a `RunDirError` that says what is intact."""
        try:
            yield
        except OSError as e:
            reason = e.strerror or str(e)
            raise RunDirError(
                f"Could not write {what}: {reason}. {self.last_good()} Free disk space or make {self.path} "
                "writable, then re-run the same command to resume."
            ) from e

    def last_good(self):
        """One sentence on the newest intact checkpoint, for error messages."""
        backups = sorted((self.path / BACKUP_DIR).glob("state-*.json"))
        parts = []
        if backups:
            with contextlib.suppress(Exception):
                state = TrainingState.from_dict(runs.read_json(backups[-1])["state"])
                parts.append(f"the resume backup {backups[-1].relative_to(self.path)} (step {state.step})")
        if (self.path / "last.keras").exists():
            parts.append("last.keras")
        if (self.path / "best.keras").exists():
            parts.append("best.keras")
        if not parts:
            return "No checkpoint had been written yet, so nothing was kept."
        return f"Kept intact: {', '.join(parts)}."

    def write_json(self, name, data):
        if self.chief:
            with self.writing(self.path / name):
                runs.write_json(self.path / name, data)

    def save_tokenizer(self, tokenizer, save):
        """`save(tokenizer, folder)` into `tokenizer/` (atomically, chief only)."""
        if self.chief and not (self.path / runs.TOKENIZER_DIR).exists():
            with self.writing(self.path / runs.TOKENIZER_DIR):
                with runs.atomic_path(self.path / runs.TOKENIZER_DIR) as tmp:
                    save(tokenizer, tmp)

    def _check_space(self, folder, model):
        """Raises ENOSPC (an `OSError`, so `writing` reports it) if `folder` cannot hold the model's checkpoint.

        HDF5 must not run out of space in the middle of a file: h5py then
        fails again as each of its objects is freed and the process can
        crash (a segfault, exit 139) instead of reporting the full disk. So
        the space is checked first, with a margin for HDF5's own records.
        """
        needed = _checkpoint_bytes(model)
        free = shutil.disk_usage(folder).free
        if free < needed:
            raise OSError(
                errno.ENOSPC,
                f"No space left on device (a checkpoint needs about {needed / 1e6:.1f} MB; {free / 1e6:.1f} MB free)",
            )

    def save_model(self, model, name, state=None):
        """Saves `name` (`last.keras`, `best.keras`); with `state`, a sidecar to resume from it."""
        with self.writing(self.path / name):
            if self.chief:
                self._check_space(self.path, model)
            runs.save_model(model, self.path / name, write=self.chief)
            if state is not None and self.chief:
                runs.write_json(self.path / LAST_STATE_FILE, json_state(state, model))

    def save_backup(self, model, state):
        """Writes a backup generation; keeps the newest `BACKUP_GENERATIONS`.

        The weights go first, then `state-N.json` with their checksum: a state
        file exists only for complete weights. Older generations are removed
        only after the new one is complete.
        """
        backup = self.path / BACKUP_DIR
        stem = f"state-{state.batches_done:010d}"
        if not self.chief:
            # Reading sharded weights is collective: join it, keep nothing.
            with tempfile.TemporaryDirectory(prefix="klm-scratch-") as scratch:
                model.save_weights(os.path.join(scratch, "w.weights.h5"))
            return
        with self.writing(backup / f"{stem}.weights.h5"):
            backup.mkdir(exist_ok=True)
            self._check_space(backup, model)
            weights = backup / f"{stem}.weights.h5"
            with runs.atomic_path(weights, ".weights.h5") as tmp:
                model.save_weights(tmp)
            record = json_state(state, model)
            record.update(weights=weights.name, sha256=sha256_of_file(weights))
            lora = _lora_variables(model)
            if lora:
                # Keras saves a LoRA layer's kernel merged with its adapters
                # and zeroes the adapters on load: keep them apart to resume.
                import numpy as np

                arrays = backup / f"{stem}.lora.npz"
                with runs.atomic_path(arrays, ".npz") as tmp:
                    with open(tmp, "wb") as f:
                        np.savez(f, *[_to_numpy(v) for v in lora.values()])
                record["lora"] = {"file": arrays.name, "sha256": sha256_of_file(arrays), "paths": list(lora)}
            fault_point("backup-write")
            runs.write_json(backup / f"{stem}.json", record)
        generations = sorted(backup.glob("state-*.json"))
        for old in generations[:-BACKUP_GENERATIONS]:
            old.unlink(missing_ok=True)
            for suffix in (".weights.h5", ".lora.npz"):
                (backup / (old.name[: -len(".json")] + suffix)).unlink(missing_ok=True)

    def truncate_metrics(self, batches, step):
        """Drops `metrics.csv` rows logged after the backup a run resumes from (past `batches`)."""
        path = self.path / METRICS_FILE
        if not self.chief or not path.exists():
            return
        with open(path, newline="") as f:
            text = f.read()
        rows = list(csv.DictReader(io.StringIO(text)))

        def before(row):
            if row.get("batch"):
                return int(float(row["batch"])) <= batches
            return bool(row.get("step")) and int(float(row["step"])) <= step

        kept = [r for r in rows if before(r)]
        if len(kept) == len(rows):
            return
        fields = list(rows[0].keys())
        with self.writing(path):
            with runs.atomic_path(path, ".csv") as tmp:
                with open(tmp, "w", newline="") as f:
                    writer = csv.DictWriter(f, fieldnames=fields)
                    writer.writeheader()
                    writer.writerows(kept)

    # === Resuming ===

    def latest_state(self):
        """The newest backup's `TrainingState` (no weights are read), or `None`."""
        for state_file in sorted((self.path / BACKUP_DIR).glob("state-*.json"), reverse=True):
            with contextlib.suppress(Exception):
                return TrainingState.from_dict(runs.read_json(state_file).get("state"))
        return None

    def resume(self, model):
        """Restores the newest intact checkpoint into `model`; `None` for a new run.

        Tries each backup generation (newest first, checksum verified), then
        `last.keras`. Each one skipped is a warning in the result.
        """
        warnings = []
        backup = self.path / BACKUP_DIR
        for state_file in sorted(backup.glob("state-*.json"), reverse=True):
            try:
                record = runs.read_json(state_file)
                state = TrainingState.from_dict(record.get("state"))
                weights = backup / record["weights"]
                if not weights.exists():
                    raise ValueError(f"{weights.name} is missing")
                if sha256_of_file(weights) != record["sha256"]:
                    raise ValueError(f"{weights.name} does not match its checksum (damaged or incomplete)")
                model.load_weights(str(weights))
                if record.get("lora"):
                    _restore_lora(model, backup, record["lora"])
            except Exception as e:  # noqa: BLE001 - any unreadable generation falls back to the previous one
                warnings.append(f"skipped the damaged backup {state_file.relative_to(self.path)}: {e}")
                continue
            restore_rng(model, state.rng)
            return ResumePoint(state, f"the backup {state_file.relative_to(self.path)}", warnings)
        last = self.path / "last.keras"
        if last.exists():
            try:
                record = runs.read_json(self.path / LAST_STATE_FILE)
                state = TrainingState.from_dict(record.get("state"))
                model.load_weights(str(last))
                import keras

                step = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
                if step != state.step:
                    raise ValueError(f"{LAST_STATE_FILE} is for step {state.step}, last.keras for step {step}")
            except Exception as e:  # noqa: BLE001
                raise RunDirError(
                    f"{self.path} cannot be resumed: no intact backup ({'; '.join(warnings) or 'backup/ is empty'}) "
                    f"and {last} (or {LAST_STATE_FILE}) is unreadable ({e}). Start over with --restart (deletes "
                    f"the run), or copy the run folder elsewhere first to keep it. "
                    f"Received: --run-dir={str(self.path)!r}"
                ) from e
            restore_rng(model, state.rng)
            warnings.append(
                f"no intact resume backup in {self.path / BACKUP_DIR}; resuming from last.keras (step "
                f"{state.step}): training done after that step is lost and will be redone"
            )
            return ResumePoint(state, "last.keras", warnings)
        if warnings:
            # Backups existed but none is intact: starting from step 0 here would
            # silently redo the run and log its metrics rows a second time.
            raise RunDirError(
                f"{self.path} cannot be resumed: every resume backup is damaged ({'; '.join(warnings)}) and there "
                f"is no last.keras. Start over with --restart (deletes the run's checkpoints and metrics), or copy "
                f"the run folder elsewhere first to keep it. Received: --run-dir={str(self.path)!r}"
            )
        return None


# Identity fields that every klm run has recorded in config.json since the
# first release; the others are compared only when the old run recorded them.
IDENTITY_FIELDS_SINCE_START = frozenset({"task", "preset", "tokenizer", "vocab_size", "seq_len"})


def _setting(field):
    """How an identity field is named to the user: its flag where it has one."""
    flags = {"from_run": "--from", "data_files": "--data", "train_files": "--train", "labels": "the labels"}
    if field in flags:
        return flags[field]
    if field in ("task", "finetune_task", "backend"):
        return field
    return "--" + field.replace("_", "-")


def _is_legacy_run(path):
    """A run folder written before klm's marker existed: klm's config.json and a checkpoint."""
    try:
        config = runs.read_json(path / runs.CONFIG_FILE)
    except (OSError, ValueError):
        return False
    has_checkpoint = any((path / BACKUP_DIR).glob("state-*.json")) or (path / "last.keras").is_file()
    return (
        isinstance(config, dict)
        and config.get("task") in model_families()
        and "run_dir" in config
        and "backend" in config
        and has_checkpoint
    )


def _checkpoint_bytes(model):
    """An upper estimate of a checkpoint's size: every weight and optimizer variable, plus HDF5/zip records."""
    optimizer = getattr(model, "optimizer", None)
    variables = list(model.weights) + (list(optimizer.variables) if optimizer is not None else [])
    total = 0
    for variable in variables:
        size = 1
        for dim in variable.shape:
            size *= int(dim)
        itemsize = {"float64": 8, "int64": 8, "bfloat16": 2, "float16": 2, "int8": 1, "uint8": 1, "bool": 1}.get(
            str(variable.dtype), 4
        )
        total += size * itemsize + 4096  # a dataset's header and attributes
    return total + (1 << 18)  # the file's own records, the model config, the zip directory


def _lora_variables(model):
    """The variables of the model's LoRA layers (kernel, bias, adapters), by path."""
    variables = {}
    for layer in model._flatten_layers(include_self=False):
        if getattr(layer, "lora_enabled", False):
            for variable in layer.weights:
                variables[variable.path] = variable
    return variables


def _to_numpy(variable):
    import keras
    import numpy as np

    return np.asarray(keras.ops.convert_to_numpy(keras.ops.cast(variable, "float32")))


def _restore_lora(model, backup, record):
    import numpy as np

    arrays = backup / record["file"]
    if not arrays.exists() or sha256_of_file(arrays) != record["sha256"]:
        raise ValueError(f"{record['file']} is missing or does not match its checksum")
    variables = _lora_variables(model)
    with np.load(arrays) as data:
        for i, path in enumerate(record["paths"]):
            if path not in variables:
                raise ValueError(f"the model has no LoRA variable {path}")
            variables[path].assign(data[f"arr_{i}"].astype(variables[path].dtype))


def json_state(state, model):
    """The JSON record of a state, with the model's dropout RNG captured now."""
    state.rng = capture_rng(model)
    return {"state": json.loads(state.to_json())}
