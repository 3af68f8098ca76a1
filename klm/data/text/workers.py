"""Worker processes for the cleaning and encoding stages of `klm prepare`.

`OrderedPool(workers, setup)` starts `workers` Python processes and
`map(tasks)` hands them the tasks round-robin and yields their results in
task order, with at most `in_flight` tasks handed out and not yet yielded, so
that memory stays flat however long the input.

- The workers are new interpreters (`subprocess` of `sys.executable`), never
  `fork`ed copies: forking a process that has imported TensorFlow can
  deadlock. Tasks and results travel pickled over each worker's stdin and
  stdout (the worker moves its own stdout to stderr, so stray prints and
  C-level logs cannot corrupt the channel).
- Each worker builds its handler once from `setup = (module, function,
  kwargs)`: `module.function(**kwargs)` returns `handle(task) -> result`.
  `cleaning_worker` and `encoding_worker` below are the two handlers.
- Errors come back in order: a task's exception is pickled back and raised by
  `map` when that task's turn comes, and an exception of the task generator
  itself (a source that cannot be read, ...) waits until the tasks handed out
  before it are done. The first error is thus the one a single process would
  meet first, with the same type and message (a `DataError` naming the file
  and line stays one); other exceptions (bugs) get the worker's traceback as
  a note.
- With `light=True` the worker imports `klm.data`'s modules without running
  `klm/data/__init__.py`, which imports TensorFlow, tf-text and keras-hub
  (seconds of CPU and hundreds of MB per process): cleaning and the byte
  tokenizer need none of them.
- Workers ignore SIGINT (Ctrl-C reaches the whole process group; the parent
  decides what happens) and exit when their stdin closes, so they never
  outlive the parent; leaving the `with` block stops them, and kills them at
  once after an error or an interrupt.
"""

import collections
import importlib
import os
import pickle
import queue
import signal
import struct
import subprocess
import sys
import threading
import traceback

from klm.errors import KlmError

_HEADER = struct.Struct("<Q")

_BOOTSTRAP = """\
import signal
signal.signal(signal.SIGINT, signal.SIG_IGN)
import os, sys, types
if {light}:
    import klm
    package = types.ModuleType("klm.data")
    package.__path__ = [os.path.join(os.path.dirname(klm.__file__), "data")]
    sys.modules["klm.data"] = package
from klm.data.text.workers import serve
serve()
"""


def usable_cpus():
    """The number of CPUs this process may run on (`os.sched_getaffinity`), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _write_frame(stream, obj):
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)))
    stream.write(data)
    stream.flush()


def _read_frame(stream):
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError
    (size,) = _HEADER.unpack(header)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError
    return pickle.loads(data)


def _portable(error):
    """`error` ready to pickle back: a user error as it is (its message says it all), anything else
    (a bug) with the worker's traceback as a note, or as a `RuntimeError` when it does not pickle."""
    if isinstance(error, KlmError):
        return error
    note = "In a klm prepare worker process:\n" + traceback.format_exc()
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        error = RuntimeError(f"{type(error).__name__}: {error}")
    if hasattr(error, "add_note"):  # Python >= 3.11
        error.add_note(note)
    return error


def serve():
    """The worker loop: read the setup, then answer tasks until stdin closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stdin = sys.stdin.buffer
    channel = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    try:
        module, function, kwargs = _read_frame(stdin)
    except EOFError:
        return
    handle, setup_error = None, None
    try:
        handle = getattr(importlib.import_module(module), function)(**kwargs)
    except Exception as e:
        setup_error = e
    while True:
        try:
            task = _read_frame(stdin)
        except EOFError:
            return
        try:
            if setup_error is not None:
                raise setup_error
            reply = (True, handle(task))
        except Exception as e:
            reply = (False, _portable(e))
        _write_frame(channel, reply)


class OrderedPool:
    """Worker processes that run tasks and give back the results in task order.

    Args:
        workers: the number of processes.
        setup: `(module, function, kwargs)`; each worker calls
            `module.function(**kwargs)` once to get its `handle(task)`.
        light: import `klm.data` modules without `klm/data/__init__.py` (no
            TensorFlow) in the workers.
        in_flight: the most tasks handed out and not yet yielded. Defaults to
            2 per worker.
        env: environment variables to set in the workers.

    Example:

    ```python
    with OrderedPool(2, ("klm.data.text.workers", "cleaning_worker", {...}), light=True) as pool:
        for result in pool.map(tasks):
            ...
    ```
    """

    def __init__(self, workers, setup, light=False, in_flight=None, env=None):
        self.in_flight = in_flight or 2 * workers
        self._procs = []
        self._replies = []
        self._broken = False
        package_root = os.path.dirname(os.path.dirname(os.path.abspath(importlib.import_module("klm").__file__)))
        child_env = dict(os.environ)
        child_env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, child_env.get("PYTHONPATH")) if p)
        child_env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        child_env.update(env or {})
        command = [sys.executable, "-c", _BOOTSTRAP.format(light=bool(light))]
        try:
            for _ in range(workers):
                proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=child_env)
                replies = queue.Queue()
                self._procs.append(proc)
                self._replies.append(replies)
                threading.Thread(target=self._read_replies, args=(proc, replies), daemon=True).start()
                _write_frame(proc.stdin, setup)
        except BaseException:
            self.close(kill=True)
            raise

    @staticmethod
    def _read_replies(proc, replies):
        try:
            while True:
                replies.put(_read_frame(proc.stdout))
        except (EOFError, OSError, ValueError, pickle.UnpicklingError):
            pass
        replies.put(None)

    def _died(self, index):
        self._broken = True
        proc = self._procs[index]
        try:
            code = proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = "still running"
        return RuntimeError(
            f"A klm prepare worker process stopped unexpectedly (exit code {code}); see the messages above. "
            f"Run with --workers 1 to work in one process."
        )

    def map(self, tasks):
        """Runs `tasks` (an iterable, read lazily) in the workers; yields the results in order."""
        if self._broken:
            raise RuntimeError("Expected a working pool of klm prepare workers. Received: a pool stopped by an error")
        tasks = iter(tasks)
        pending = collections.deque()
        deferred = None
        exhausted = False
        sent = 0
        try:
            while True:
                while not exhausted and len(pending) < self.in_flight:
                    try:
                        task = next(tasks)
                    except StopIteration:
                        exhausted = True
                        break
                    except Exception as e:
                        deferred, exhausted = e, True
                        break
                    index = sent % len(self._procs)
                    try:
                        _write_frame(self._procs[index].stdin, task)
                    except OSError:
                        raise self._died(index) from None
                    pending.append(index)
                    sent += 1
                if not pending:
                    break
                index = pending.popleft()
                reply = self._replies[index].get()
                if reply is None:
                    raise self._died(index)
                ok, value = reply
                if not ok:
                    self._broken = True
                    raise value
                yield value
            if deferred is not None:
                raise deferred
        finally:
            if pending:
                # Abandoned half-way (an error, or the consumer stopped): the
                # replies still due would answer the next map's tasks.
                self._broken = True

    def close(self, kill=False):
        """Stops the workers: lets them finish (closing their stdin), or kills them."""
        kill = kill or self._broken
        for proc in self._procs:
            if kill:
                proc.kill()
            try:
                proc.stdin.close()
            except OSError:
                pass
        for proc in self._procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        self._procs = []

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(kill=exc_type is not None)


# --------------------------------------------------------------------------
# The handlers (`setup` functions) of klm prepare's stages. They import what
# they need inside, so that the cleaning worker loads no TensorFlow.
# --------------------------------------------------------------------------


def cleaning_worker(config, transform_only):
    """Cleans blocks of documents (see `klm.data.text.clean_and_tokenize.clean_to_files`).

    Args:
        config: a `CleaningConfig` as a dict.
        transform_only: run `TextCleaner.transform` only, leaving
            de-duplication (and the replacement of line breaks, which follows
            it) to the parent, which sees the documents in order.

    Tasks are `("lines", path, first_line_number, block)` (a block of
    `klm.data.text.raw_lines.iter_line_blocks`, decoded here so that invalid
    UTF-8 is counted or, with `strict_utf8`, reported with its file and line)
    or `("documents", texts, size)`. A result is `(texts, counts, read,
    size)`: the kept texts in order, the cleaner's counts for the block, the
    number of documents read and the block's size for the progress line.
    """
    # Here, not at the top: a `light` worker (see above) imports these in its new process without
    # running `klm/data/__init__.py`, which would import TensorFlow.
    from klm.data.text.cleaner import TextCleaner
    from klm.data.text.cleaning_config import CleaningConfig
    from klm.data.text.raw_lines import block_lines

    config = CleaningConfig(**config)

    def handle(task):
        cleaner = TextCleaner(config)
        step = cleaner.transform if transform_only else cleaner.clean
        if task[0] == "lines":
            _, path, first, block = task
            raw_lines = block_lines(block)
            documents = (cleaner.decode(raw, path, first + i) for i, raw in enumerate(raw_lines))
            size = len(block)
        else:
            _, documents, size = task
        kept = []
        read = 0
        for text in documents:
            read += 1
            text = step(text)
            if text is None:
                continue
            if not transform_only and ("\n" in text or "\r" in text):
                text = text.replace("\r", " ").replace("\n", " ")
            kept.append(text)
        return kept, cleaner.report(), read, size

    return handle


def encoding_worker(kind, tokenizer_dir):
    """Tokenizes blocks of lines of a cleaned text file (see `iter_token_chunks`).

    A task is a block of whole lines (bytes); a result is `(ids, lengths,
    size)`: the ids of its lines end to end, the number of ids of each line,
    and the block's size. Lines are what `tf.data.TextLineDataset` reads
    (split on `\\n`, every `\\r` dropped). The byte tokenizer's ids are the
    UTF-8 bytes, computed with NumPy; the other kinds load the tokenizer
    saved in `tokenizer_dir` and run the same TF ops as the in-process path,
    so the ids are the same.
    """
    import numpy as np

    def lines_of(block):
        if b"\r" in block:
            block = block.replace(b"\r", b"")
        return block, block.endswith(b"\n")

    if kind == "byte":

        def handle(block):
            size = len(block)
            block, complete = lines_of(block)
            data = np.frombuffer(block, dtype=np.uint8)
            newline = data == ord("\n")
            ends = np.flatnonzero(newline)
            if not complete:
                ends = np.append(ends, len(data))
            lengths = np.diff(ends, prepend=-1) - 1
            return data[~newline], lengths, size

        return handle

    import tensorflow as tf

    from klm.data.tokenizers.tokenizer_io import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_dir)

    # In a graph, as in `tf.data` (called eagerly, keras-hub's tokenizers return Python lists).
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def tokenize(lines):
        tokens = tokenizer.tokenize(lines)
        return tokens.flat_values, tokens.row_lengths()

    def handle(block):
        size = len(block)
        block, complete = lines_of(block)
        lines = block.split(b"\n")
        if complete:
            lines.pop()
        flat, lengths = tokenize(tf.constant(lines, dtype=tf.string))
        return flat.numpy(), lengths.numpy(), size

    return handle
