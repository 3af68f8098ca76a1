"""`KlmLM`: a klm model inside lm-evaluation-harness.

An `lm_eval.api.model.TemplateLM` over anything `klm evaluate` loads (klm
language-model and SFT runs, LoRA runs, keras-hub presets, `hf://ORG/NAME`,
local Transformers or keras-hub folders), on the TensorFlow, JAX and PyTorch
backends. Importing this module registers it in lm-eval's model registry as
`klm` (`lm_eval.simple_evaluate(model="klm", model_args="pretrained=RUN")`).

Its numbers equal lm-eval's own `hf` model's on the same Transformers
checkpoint because it follows `lm_eval.models.huggingface.HFLM` step by step:

- Tokenization: `_encode_pair` and the empty-context rule are lm-eval's own
  (inherited from `TemplateLM`): trailing spaces of the context move to the
  continuation, context + continuation are encoded together and split after
  the context's own token count. `tok_encode` adds what the Transformers
  tokenizer's `encode(text)` adds by default (the start token for Llama 3,
  nothing for GPT-2; see `klm.evaluation.conventions`), and nothing when the
  text already starts with that token's text. The ids are keras-hub's
  tokenizer's, which equal Transformers' for the byte-level BPE checkpoints
  keras-hub converts (tested).
- `loglikelihood`: requests sorted longest first, cut to the model's last
  `max_length + 1` tokens, right-padded to the batch's longest, one forward
  pass per batch; log-softmax in float32; `is_greedy` when every
  continuation token is the argmax.
- `loglikelihood_rolling`: lm-eval's own disjoint rolling windows
  (`get_rolling_token_windows` with the prefix token, context 1) scored as
  above and summed.
- `generate_until`: prompts encoded like `tok_batch_encode` (left-truncated
  to `max_length - max_gen_toks`), batched by generation arguments, decoded
  with klm's key/value cache (`klm.decoding`), one decoding step per
  position for the whole batch (compiled on JAX and TensorFlow, see
  `klm.evaluation.scoring`); a row stops at the end-of-text token, a
  stop string or `max_gen_toks`, and its text is cut at the first stop
  string. Greedy unless `do_sample`/`temperature > 0` (then keras-hub's
  random, top-k or top-p sampler, seeded).
"""

import numpy as np
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model

from klm.errors import ConfigError
from klm.evaluation import conventions
from klm.evaluation.chat import checkpoint_template
from klm.evaluation.scoring import ModelFunctions, generate_batch, score_batch
from klm.generate import detokenize, detokenize_many, make_sampler, tokens_to_list
from klm.pretrained import load_checkpoint

DEFAULT_MAX_GEN_TOKS = 256


@register_model("klm")
class KlmLM(TemplateLM):
    """A klm checkpoint as an lm-eval language model.

    Args:
        pretrained: what `klm evaluate` takes as RUN (a klm run folder, a
            keras-hub preset, `hf://ORG/NAME`, a local Transformers or
            keras-hub folder), or a loaded `klm.pretrained.Checkpoint`.
        batch_size: requests per forward pass (and prompts per generation
            batch).
        max_length: context in tokens. Default: the checkpoint's, read as
            lm-eval's `hf` model reads it.
        add_bos_token: put the start token before every encoded text.
            Default: what the checkpoint's Transformers tokenizer does.
        max_gen_toks: tokens generated at most when a task does not say.
        dtype: pretrained checkpoints: load the weights in this dtype
            (`klm.pretrained.load_checkpoint`).
        seed: seed of the sampler when a task samples.
        device: ignored (lm-eval's registry passes one; the backend places the model).

    Raises:
        ConfigError: the checkpoint is a classifier (no language-model
            head), or a value is out of range.

    Example:

    ```python
    import lm_eval
    from klm.evaluation.harness import KlmLM

    lm = KlmLM("runs/gpt2-domain", batch_size=16)
    results = lm_eval.simple_evaluate(model=lm, tasks=["hellaswag"], limit=100)
    ```
    """

    def __init__(
        self,
        pretrained,
        batch_size=8,
        max_length=None,
        add_bos_token=None,
        max_gen_toks=DEFAULT_MAX_GEN_TOKS,
        dtype=None,
        seed=0,
        device=None,
    ):
        super().__init__()
        del device  # lm-eval's registry passes one; Keras places the model on its backend's device
        if batch_size in (None, "auto"):
            batch_size = 8

        batch_size = int(batch_size)
        if batch_size < 1:
            raise ConfigError(f"Expected a positive batch size. Received: --batch-size={batch_size}")
        checkpoint = pretrained if hasattr(pretrained, "tokenizer") else load_checkpoint(pretrained, dtype=dtype)
        if not checkpoint.mode.generates:
            raise ConfigError(
                f"Expected a language model for lm-eval tasks; {checkpoint.path} is a {checkpoint.task} run, which "
                f"has no language-model head to score or generate text with. Received: RUN={str(checkpoint.path)!r}"
            )
        self.checkpoint = checkpoint
        self.model = checkpoint.model
        self.klm_tokenizer = checkpoint.tokenizer
        self._batch_size = batch_size
        self._max_length = int(max_length) if max_length else conventions.context_length(checkpoint)
        self._max_gen_toks = int(max_gen_toks)
        if isinstance(add_bos_token, str):
            add_bos_token = add_bos_token.lower() in ("1", "true", "yes")
        self.add_bos_token = conventions.adds_start_token(checkpoint) if add_bos_token is None else add_bos_token
        self.start_token_id = getattr(self.klm_tokenizer, "start_token_id", None)
        if self.start_token_id is None:
            self.start_token_id = checkpoint.start_token_id
        self.seed = int(seed)
        self._prefix_text = None
        self._template = None
        self._functions = None

    # === What lm-eval asks of a TemplateLM ===

    @property
    def eot_token_id(self):
        return getattr(self.klm_tokenizer, "end_token_id", None)

    @property
    def prefix_token_id(self):
        """The token an empty context (and every rolling window) starts from: the start token, else end-of-text."""
        start = self.checkpoint.start_token_id
        return start if start is not None else self.eot_token_id

    @property
    def max_length(self):
        return self._max_length

    @property
    def max_gen_toks(self):
        return self._max_gen_toks

    @property
    def batch_size(self):
        return self._batch_size

    @property
    def device(self):
        import keras

        return keras.config.backend()

    def tok_encode(self, string, add_special_tokens=None, left_truncate_len=None, **kwargs):
        """Token ids of `string`, with the start token where Transformers' `encode` would add it."""

        add = self.add_bos_token if add_special_tokens is None else bool(add_special_tokens)
        if add_special_tokens is None and self._starts_with_prefix(string):
            add = False
        ids = tokens_to_list(self.klm_tokenizer.tokenize([string]))[0] if string else []
        if add and self.start_token_id is not None:
            ids = [int(self.start_token_id)] + ids
        if left_truncate_len:
            ids = ids[-left_truncate_len:]
        return ids

    def tok_decode(self, tokens, skip_special_tokens=True):

        tokens = [int(t) for t in np.asarray(tokens).reshape(-1)]
        if skip_special_tokens:
            special = set(self._special_ids())
            tokens = [t for t in tokens if t not in special]
        return detokenize(self.klm_tokenizer, tokens)

    def _decode_many(self, id_lists):
        """`[tok_decode(ids) for ids in id_lists]` in one tokenizer call."""

        special = set(self._special_ids())
        return detokenize_many(self.klm_tokenizer, [[int(t) for t in ids if int(t) not in special] for ids in id_lists])

    def _model_functions(self):
        """The compiled model calls, made once (JAX/TF keep one program per bucketed shape)."""
        if self._functions is None:
            self._functions = ModelFunctions(self.model)
        return self._functions

    def _special_ids(self):
        ids = getattr(self.klm_tokenizer, "special_token_ids", None)
        if ids is None:
            names = ("start_token_id", "end_token_id", "pad_token_id")
            ids = [getattr(self.klm_tokenizer, name, None) for name in names]
        return [int(i) for i in ids if i is not None]

    def _starts_with_prefix(self, string):
        if self._prefix_text is None:
            prefix = self.prefix_token_id
            self._prefix_text = self.tok_decode([prefix], skip_special_tokens=False) if prefix is not None else ""
        return bool(self._prefix_text) and string.startswith(self._prefix_text)

    # === Scoring ===

    def _loglikelihood_tokens(self, requests, disable_tqdm=False, override_bs=None):
        """`[(sum of continuation log-probabilities, is_greedy)]` of `((context, continuation), ids, ids)`."""

        order = sorted(range(len(requests)), key=lambda i: _length_key(requests[i][1] + requests[i][2]))
        results = [None] * len(requests)
        batch = override_bs or self.batch_size
        progress = _progress(len(requests), "loglikelihood requests", disable_tqdm)
        for start in range(0, len(order), batch):
            chunk = [requests[i] for i in order[start : start + batch]]
            scores = score_batch(self.model, chunk, self.max_length, rows=batch, functions=self._model_functions())
            for index, result in zip(order[start : start + batch], scores):
                results[index] = result
                if self.cache_hook is not None and requests[index][0] is not None:
                    self.cache_hook.add_partial("loglikelihood", requests[index][0], result)
            progress.update(len(chunk))
        progress.close()
        return results

    def loglikelihood_rolling(self, requests, disable_tqdm=False):
        from lm_eval import utils

        windows, owners = [], []
        for index, (string,) in enumerate(request.args for request in requests):
            token_windows = utils.get_rolling_token_windows(
                token_list=self.tok_encode(string),
                prefix_token=self.prefix_token_id,
                max_seq_len=self.max_length,
                context_len=1,
            )
            for window in map(utils.make_disjoint_window, token_windows):
                windows.append((None,) + window)
                owners.append(index)
        scores = self._loglikelihood_tokens(windows, disable_tqdm=disable_tqdm)
        totals = [0.0] * len(requests)
        for owner, (logprob, _) in zip(owners, scores):
            totals[owner] += logprob
        for request, total in zip(requests, totals):
            if self.cache_hook is not None:
                self.cache_hook.add_partial("loglikelihood_rolling", request.args, total)
        return totals

    # === Generation ===

    def generate_until(self, requests, disable_tqdm=False):
        from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs

        args = [request.args for request in requests]
        encoded = [self.tok_encode(context) for context, _ in args]
        # Batches share their generation arguments; longest prompts first (lm-eval's order).
        groups = {}
        for index, (_, gen_kwargs) in enumerate(args):
            groups.setdefault(_freeze(gen_kwargs), []).append(index)
        eos = self.tok_decode([self.eot_token_id], skip_special_tokens=False) if self.eot_token_id is not None else None
        results = [None] * len(requests)
        progress = _progress(len(requests), "generate_until requests", disable_tqdm)
        for indices in groups.values():
            kwargs = normalize_gen_kwargs(dict(args[indices[0]][1]), self.max_gen_toks)
            until = handle_stop_sequences(kwargs.pop("until", None), eos=eos)
            max_gen_toks = int(kwargs.pop("max_gen_toks"))
            max_context = self.max_length - max_gen_toks
            if max_context <= 0:
                raise ConfigError(
                    f"Expected max_gen_toks below the model's {self.max_length} positions. "
                    f"Received: max_gen_toks={max_gen_toks}"
                )
            sampler = self._sampler(kwargs)
            indices = sorted(indices, key=lambda i: (-len(encoded[i]), args[i][0]))
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                prompts = [encoded[i][-max_context:] or [self.prefix_token_id] for i in chunk]
                stops = (self.eot_token_id, until, self._decode_many)
                outputs = generate_batch(
                    self.model,
                    prompts,
                    max_gen_toks,
                    sampler,
                    *stops,
                    rows=self.batch_size,
                    functions=self._model_functions(),
                )
                for index, text in zip(chunk, outputs):
                    results[index] = text
                    if self.cache_hook is not None:
                        self.cache_hook.add_partial("generate_until", args[index], text)
                progress.update(len(chunk))
        progress.close()
        return results

    def _sampler(self, kwargs):

        temperature = float(kwargs.get("temperature") or 0.0)
        if not kwargs.get("do_sample") or temperature <= 0.0:
            return make_sampler("greedy")
        if kwargs.get("top_k"):
            return make_sampler("top_k", temperature=temperature, top_k=int(kwargs["top_k"]), seed=self.seed)
        if kwargs.get("top_p") and float(kwargs["top_p"]) < 1.0:
            return make_sampler("top_p", temperature=temperature, top_p=float(kwargs["top_p"]), seed=self.seed)
        return make_sampler("random", temperature=temperature, seed=self.seed)

    # === Chat templates (instruction-tuned runs and checkpoints) ===

    def _chat(self):
        if self._template is None:
            self._template = checkpoint_template(self.checkpoint)
        return self._template

    @property
    def tokenizer_name(self):
        name = str((self.checkpoint.source or {}).get("name") or "klm")
        return name.replace("/", "__")

    def chat_template(self, chat_template=False):
        if chat_template is False or chat_template is None:
            return None
        return self._chat().text

    def apply_chat_template(self, chat_history, add_generation_prompt=True):
        """The prompt text of `chat_history` (`[{"role", "content"}]`) in the run's or checkpoint's template."""
        return self._chat().render(chat_history, add_generation_prompt, self)


def _length_key(tokens):
    return -len(tokens), tuple(tokens)


def _freeze(value):
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _progress(total, what, disable):
    from tqdm import tqdm

    return tqdm(total=total, desc=f"klm: {what}", disable=disable or total == 0)
