"""Dynamic batching: the requests waiting when the model is free are decoded together.

One thread (the scheduler) runs the model; the HTTP side only queues
`Sequence`s and reads their events. Each round takes up to `max_batch_size`
waiting sequences and decodes them as one batch through `klm.decoding`
(`build_cache`, then one `decode_step` per position for the whole batch),
each row with its own sampling, stop strings, end-of-text and length; a row
that finishes (or whose client went away) is dropped from the batch and its
cache at once (`klm.decoding.select_rows`), so the batch shrinks to the
rows still generating. Requests arriving meanwhile wait for the next round.

Why right-padded prompts and one shared position per step: klm's cache (and
every keras-hub model's `call_with_cache`) writes one position index for the
whole batch and attends causally, with no padding mask. So prompts of
different lengths are right-padded and the batch starts decoding at the
shortest prompt's last position; a longer row is fed its own prompt tokens
until its prompt is used up (as keras-hub's `generate()` does with its
padding mask). Causal attention never lets a position see the padding after
it, and each padding position's keys/values are overwritten by the row's own
token before any later position reads them. Every row thus keeps its true
positions (learned position embeddings stay right) and computes what it
would alone: greedy responses equal `klm generate`'s. Left padding would need
an attention mask and per-row position offsets that the cache code lacks.
"""

import collections
import threading
import time

import numpy as np

from klm.generate import cut_at_stop, detokenize_many
from klm.serve.sampling import sample_token


class Sequence:
    """One response being generated (one choice of one request), with what it streams back.

    Args:
        prompt_ids: the prompt's token ids (non-empty).
        max_tokens: response tokens at most.
        emit: callable `(event)` the scheduler thread calls with dicts
            `{"type": "text", "index", "text"}` (new response text, held back
            while it could still become a stop string; with `streams`), then
            `{"type": "finish", "index", "finish_reason", "text",
            "completion_tokens"}` or `{"type": "error", "index", "message"}`.
        temperature, top_p: sampling (temperature 0: greedy).
        seed: seeds this sequence's own random generator, or `None`.
        stop: strings that end the response (cut off).
        index: the choice's index in its request.
        cancelled: a `threading.Event` set when the client went away.
        streams: emit text as it comes; `False` (a non-streaming request
            without stop strings) detokenizes only once, when it finishes.
    """

    def __init__(
        self,
        prompt_ids,
        max_tokens,
        emit,
        temperature=1.0,
        top_p=1.0,
        seed=None,
        stop=(),
        index=0,
        cancelled=None,
        streams=True,
    ):
        self.prompt_ids = [int(i) for i in prompt_ids]
        self.max_tokens = int(max_tokens)
        self.emit = emit
        self.temperature, self.top_p = temperature, top_p
        self.rng = np.random.default_rng(seed)
        self.stop = [s for s in stop if s]
        self.index = index
        self.cancelled = cancelled if cancelled is not None else threading.Event()
        self.generated = []
        self.text = ""
        self.shown = 0
        self.finish_reason = None
        self.ended = False  # end-of-text was sampled
        self.streams = streams
        self._holdback = max((len(s) for s in self.stop), default=1) - 1

    def choose(self, logits):
        return sample_token(logits, self.temperature, self.top_p, self.rng)

    def take(self, token_id, end_id):
        """Records the sampled `token_id` (end-of-text ends the response, and is not part of it)."""
        if end_id is not None and token_id == end_id:
            self.ended = True
        else:
            self.generated.append(int(token_id))

    @property
    def needs_text(self):
        """Whether this step needs the response's text: to stream it, find stop strings, or finish."""
        return self.streams or bool(self.stop) or self.ended or len(self.generated) >= self.max_tokens

    def update(self, text):
        """Takes the text of the tokens so far; streams what is new. Returns whether the response is finished."""

        cut, found = cut_at_stop(text, self.stop)
        self.text = cut
        if self.ended or found:
            return self._finish("stop")
        self._show(text[: max(len(text) - self._holdback, self.shown)])
        if len(self.generated) >= self.max_tokens:
            return self._finish("length")
        return False

    def fail(self, message):
        self.finish_reason = "error"
        self.emit({"type": "error", "index": self.index, "message": message})

    def _show(self, visible):
        if len(visible) > self.shown:
            self.emit({"type": "text", "index": self.index, "text": visible[self.shown :]})
            self.shown = len(visible)

    def _finish(self, reason):
        self._show(self.text)
        self.finish_reason = reason
        self.emit(
            {
                "type": "finish",
                "index": self.index,
                "finish_reason": reason,
                "text": self.text,
                "completion_tokens": len(self.generated),
            }
        )
        return True


class BatchScheduler:
    """Runs the model on one thread, decoding the waiting `Sequence`s in batches.

    Args:
        served: a `klm.serve.engine.ServedModel`.
        max_batch_size: sequences decoded together at most (1: one at a
            time, the unbatched baseline).

    Examples:
    ```python
    scheduler = BatchScheduler(served, max_batch_size=16)
    scheduler.start()
    scheduler.submit([Sequence(ids, 20, emit=print, temperature=0)])
    scheduler.stop()  # finishes what was submitted, then returns
    ```
    """

    def __init__(self, served, max_batch_size=16):
        self.served = served
        self.max_batch_size = max_batch_size
        self._pending = collections.deque()
        self._condition = threading.Condition()
        self._stopping = False
        self._thread = None
        self.active = 0
        self.stats = collections.Counter()

    @property
    def queued(self):
        return len(self._pending)

    def start(self):
        self._thread = threading.Thread(target=self._loop, name="klm-serve-scheduler", daemon=True)
        self._thread.start()

    def submit(self, sequences):
        """Queues `sequences` (one request's choices) for the next round."""
        with self._condition:
            if self._stopping:
                raise RuntimeError("the server is shutting down")
            self._pending.extend(sequences)
            self._condition.notify()

    def stop(self, timeout=None):
        """Lets the sequences already submitted finish, then ends the thread."""
        with self._condition:
            self._stopping = True
            self._condition.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    def run_once(self, sequences):
        """Decodes `sequences` as one batch on the calling thread (warm-up, tests)."""
        self._decode(list(sequences))

    def _loop(self):
        while True:
            with self._condition:
                while not self._pending and not self._stopping:
                    self._condition.wait()
                if not self._pending:
                    return
                count = min(self.max_batch_size, len(self._pending))
                batch = [self._pending.popleft() for _ in range(count)]
            batch = [sequence for sequence in batch if not sequence.cancelled.is_set()]
            if not batch:
                continue
            self.active = len(batch)
            try:
                self._decode(batch)
            except Exception as e:  # noqa: BLE001 - one bad batch must not stop the server
                for sequence in batch:
                    if sequence.finish_reason is None:
                        sequence.fail(f"Generation failed: {type(e).__name__}: {e}")
            finally:
                self.active = 0

    def _decode(self, batch):
        from keras import ops

        from klm import backend, decoding

        served = self.served
        model = served.model
        started = time.perf_counter()
        lengths = [len(sequence.prompt_ids) for sequence in batch]
        total = max(length + sequence.max_tokens for length, sequence in zip(lengths, batch))
        padded = np.full((len(batch), max(lengths)), served.pad_id, dtype="int32")
        for row, sequence in enumerate(batch):
            padded[row, : lengths[row]] = sequence.prompt_ids
        index = min(lengths) - 1  # the position decoded next, for every row
        rows = list(batch)
        tokens = padded[:, index]
        self.stats["batches"] += 1
        self.stats["sequences"] += len(batch)
        self.stats["largest_batch"] = max(self.stats["largest_batch"], len(batch))
        with backend.decoding_scope():
            cache = decoding.build_cache(model, ops.convert_to_tensor(padded), total)
            while rows:
                logits, cache = decoding.decode_step(model, ops.convert_to_tensor(tokens[:, None]), cache, index)
                logits = ops.convert_to_numpy(logits)
                self.stats["steps"] += 1
                self.stats["row_steps"] += len(rows)
                keep, next_tokens, chosen = [], [], []
                for row, sequence in enumerate(rows):
                    position = index + 1
                    if sequence.cancelled.is_set():
                        self.stats["cancelled"] += 1
                        continue
                    if position < len(sequence.prompt_ids):
                        token = sequence.prompt_ids[position]  # still reading its own (longer) prompt
                    else:
                        token = sequence.choose(logits[row])
                        sequence.take(token, served.end_id)
                        chosen.append(sequence)
                    keep.append(row)
                    next_tokens.append(token)
                # One tokenizer call for every row whose text this step needs (streams, stop strings, ends).
                texting = [sequence for sequence in chosen if sequence.needs_text]
                texts = detokenize_many(served.tokenizer, [sequence.generated for sequence in texting])
                finished = {id(sequence) for sequence, text in zip(texting, texts) if sequence.update(text)}
                next_tokens = [token for row, token in zip(keep, next_tokens) if id(rows[row]) not in finished]
                keep = [row for row in keep if id(rows[row]) not in finished]
                index += 1
                if len(keep) < len(rows) and keep:
                    cache = decoding.select_rows(cache, keep)
                rows = [rows[row] for row in keep]
                tokens = np.asarray(next_tokens, dtype="int32")
        self.stats["decode_seconds"] += time.perf_counter() - started
