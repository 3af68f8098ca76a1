"""Text generation from a language-model run, with the KV cache and streaming."""

import numpy as np

from klm.config import check_utf8_text
from klm.errors import ConfigError, KlmError, RunDirError
from klm.sft.conversations import Conversation
from klm.sft.encoding import conversation_pieces, encode_pieces, fit_prompt, tokens_to_list
from klm.sft.prompt_template import template_from_dict
from klm.tasks import get_task, task_for_config


def utf8_lines(stream, name="stdin"):
    """The lines of a binary stream, decoded as UTF-8 (without the line end); `ConfigError` naming the line.

    Lines are yielded as they arrive (an interactive `--chat` answers each
    before the next is read).
    """
    for number, line in enumerate(stream, start=1):
        try:
            yield line.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as e:
            raise ConfigError(
                f"Expected {name} to be UTF-8 text; line {number} holds bytes that are not UTF-8 "
                f"({line[e.start : e.end]!r} at byte {e.start}). Re-encode it as UTF-8 (e.g. iconv -f latin1 -t "
                f"utf-8). Received: {name} line {number}={line[:80]!r}"
            ) from None


def make_sampler(name, temperature=1.0, top_k=10, top_p=0.9, seed=None):
    """A keras-hub sampler for `name` in greedy, top_k, top_p, random."""
    import keras_hub

    samplers = keras_hub.samplers
    if name == "greedy":
        return samplers.GreedySampler(temperature=temperature)
    if name == "top_k":
        return samplers.TopKSampler(k=top_k, temperature=temperature, seed=seed)
    if name == "top_p":
        return samplers.TopPSampler(p=top_p, temperature=temperature, seed=seed)
    if name == "random":
        return samplers.RandomSampler(temperature=temperature, seed=seed)
    raise ConfigError(f"Expected --sampler in greedy, top_k, top_p, random. Received: --sampler={name!r}")


def generate_text(
    run, prompts, max_new_tokens=50, sampler="greedy", temperature=1.0, top_k=10, top_p=0.9, seed=None, on_token=None
):
    """Continues each prompt with up to `max_new_tokens` tokens.

    Decoding runs one token at a time through the model's `call_with_cache`
    (the prompt fills the key/value cache once, each new token costs one
    position), and the keras-hub sampler picks each token. Generation of a
    row stops at the tokenizer's end-of-text token.

    Args:
        run: a `klm.runs.Run` of a language model, or a
            `klm.pretrained.Checkpoint` (keras-hub / Hugging Face causal LM
            with its own tokenizer; prompts then start with the checkpoint's
            start token when its preprocessor adds one, as keras-hub's
            `generate()` does).
        prompts: list of strings.
        on_token: optional callback `(row, new_text)` called as soon as each
            token is chosen (streaming), with the text it added.

    Returns:
        List of generated continuations (without the prompt).
    """
    if not get_task(run.task).generates:
        raise RunDirError(f"Expected a language-model run for generation. Received: task={run.task!r}")
    for index, prompt in enumerate(prompts):
        check_utf8_text(prompt, "the prompt" if len(prompts) == 1 else f"prompt {index + 1}")
    model, tokenizer = run.model, run.tokenizer
    sampler_obj = make_sampler(sampler, temperature, top_k, top_p, seed)
    encoded = tokens_to_list(tokenizer.tokenize(list(prompts)))
    start_id = getattr(run, "start_token_id", None)
    end_id = getattr(tokenizer, "end_token_id", None)
    pad_id = getattr(tokenizer, "pad_token_id", 0) or 0
    outputs = []
    for row, prompt_ids in enumerate(encoded):
        prompt_ids = ([start_id] if start_id is not None else []) + list(prompt_ids)
        if not prompt_ids:
            prompt_ids = [end_id if end_id is not None else pad_id]
        text = ""
        generated = []

        def emit(next_id, row=row, generated=generated):
            nonlocal text
            generated.append(next_id)
            if on_token is not None:
                # Decode the whole continuation and emit the new suffix, so
                # multi-byte characters and subword joins come out right.
                new_text = detokenize(tokenizer, generated)
                on_token(row, new_text[len(text) :])
                text = new_text

        generate_ids(
            model, prompt_ids, max_new_tokens, sampler_obj, stop_token_id=end_id, pad_id=pad_id, on_token_id=emit
        )
        outputs.append(detokenize(tokenizer, generated))
    return outputs


def position_limit(model):
    """The most positions the model can encode, or `None` (sinusoidal, rotary)."""
    backbone = model.backbone
    from klm.models import KlmBackbone

    if isinstance(backbone, KlmBackbone) and backbone.position_encoding != "learned":
        return None
    return getattr(backbone, "max_sequence_length", None)


def generate_ids(
    model, prompt_ids, max_new_tokens, sampler, stop_token_id=None, pad_id=0, on_token_id=None, stop_when=None
):
    """Token ids generated after `prompt_ids` (one row), with the KV cache.

    Works for `KlmCausalLM` and every keras-hub `CausalLM`: decodes with
    `klm.decoding.prefill` and `klm.decoding.decode_step`, as `generate()`
    and the exported graph do.

    Args:
        model: the causal LM.
        prompt_ids: list of ints (non-empty).
        max_new_tokens: int.
        sampler: a keras-hub `Sampler` (see `make_sampler`).
        stop_token_id: generation stops before this id (not returned).
        pad_id: unused (the cache's positions past the prompt are written
            as decoding reaches them); kept for callers.
        on_token_id: optional callback `(id)` for each new id.
        stop_when: optional callable `(ids) -> bool` called with the ids so
            far after each new one; `True` ends generation (stop strings).

    Returns:
        The list of new ids (without the prompt and the stop id).
    """
    from keras import ops

    from klm import backend, decoding

    prompt_ids = [int(i) for i in prompt_ids]
    n = len(prompt_ids)
    total = n + max_new_tokens
    limit = position_limit(model)
    if limit is not None and total > limit:
        raise ConfigError(
            f"Prompt ({n} tokens) + --max-new-tokens {max_new_tokens} exceeds the model's "
            f"{limit} positions. Received: --max-new-tokens={max_new_tokens}"
        )
    with backend.decoding_scope():
        logits, cache = decoding.prefill(model, ops.convert_to_tensor(np.array([prompt_ids], "int32")), total)
        generated = []
        for index in range(n, total):
            probabilities = sampler.compute_probabilities(logits)
            next_id = int(ops.convert_to_numpy(sampler.get_next_token(probabilities))[0])
            if stop_token_id is not None and next_id == stop_token_id:
                break
            generated.append(next_id)
            if on_token_id is not None:
                on_token_id(next_id)
            if stop_when is not None and stop_when(generated):
                break
            if index + 1 < total:
                next_ids = ops.convert_to_tensor(np.array([[next_id]], "int32"))
                logits, cache = decoding.decode_step(model, next_ids, cache, index)
    return generated


def detokenize(tokenizer, ids):
    if not ids:
        return ""
    text = tokenizer.detokenize([ids])
    text = np.asarray(text).reshape(-1)[0]
    return text.decode("utf-8", errors="replace") if isinstance(text, bytes) else str(text)


def detokenize_many(tokenizer, id_lists):
    """`[detokenize(tokenizer, ids) for ids in id_lists]` in one tokenizer call (one per decoding step of a batch)."""
    texts = [""] * len(id_lists)
    rows = [row for row, ids in enumerate(id_lists) if ids]
    if not rows:
        return texts
    decoded = np.asarray(tokenizer.detokenize([list(id_lists[row]) for row in rows])).reshape(-1)
    for row, text in zip(rows, decoded):
        texts[row] = text.decode("utf-8", errors="replace") if isinstance(text, bytes) else str(text)
    return texts


# === Fine-tuned (SFT) runs: the run's prompt template ===


def sft_settings(run):
    """The `sft` section of an SFT run's `config.json`, or `None` for other runs."""
    config = getattr(run, "config", None) or {}
    try:  # pretrained checkpoints and other non-run models record no task
        task = task_for_config(config)
    except KlmError:
        return None
    return task.prompt_settings(config)


def run_template(run):
    """The prompt template an SFT run was trained with, or `None`."""
    settings = sft_settings(run)
    if settings is None:
        return None

    return template_from_dict(settings["template"])


def cut_at_stop(text, stop):
    """`(text up to the first stop string, found)`."""
    cuts = [text.find(s) for s in stop or () if s and s in text]
    if not cuts:
        return text, False
    return text[: min(cuts)], True


def generate_reply(
    run,
    prompt,
    history=(),
    system=None,
    max_new_tokens=50,
    sampler="greedy",
    temperature=1.0,
    top_k=10,
    top_p=0.9,
    seed=None,
    stop=(),
    on_text=None,
    raw=False,
):
    """The response of an SFT run to `prompt`, with the run's template applied (the way it was trained).

    The conversation so far (`history`, `(prompt, response)` pairs, and a
    `system` message) is rendered with the template, each earlier response
    followed by end-of-text, then the new prompt's prompt part; generation
    stops at end-of-text, at a `stop` string (cut off) or after
    `max_new_tokens`.

    Args:
        run: a `klm.pretrained.Checkpoint` of an SFT run (or any causal LM
            with `raw=True`: the prompt is then used as is).
        prompt: the user's raw prompt.
        history: earlier `(prompt, response)` turns (`klm generate --chat`).
        system: a system message, or `None`.
        stop: strings that end the response.
        on_text: optional callback `(new_text)`, streaming the response (text
            that could still turn into a stop string is held back).
        raw: skip the template.

    Returns:
        The response text.
    """
    model, tokenizer = run.model, run.tokenizer
    ids = reply_prompt_ids(run, prompt, history=history, system=system, raw=raw)
    start_id, end_id = reply_special_ids(run)
    pad_id = getattr(tokenizer, "pad_token_id", 0) or 0
    limit = position_limit(model)
    if limit is not None and len(ids) + max_new_tokens > limit:
        ids = fit_prompt(ids, limit, max_new_tokens, keep_first=0 if start_id is None else 1)
    sampler_obj = make_sampler(sampler, temperature, top_k, top_p, seed)
    holdback = max((len(s) for s in stop or () if s), default=1) - 1
    shown = [0]

    def text_of(ids_so_far):
        return detokenize(tokenizer, ids_so_far)

    def stop_when(ids_so_far):
        text = text_of(ids_so_far)
        cut, found = cut_at_stop(text, stop)
        if on_text is not None:
            visible = cut if found else text[: max(len(text) - holdback, shown[0])]
            if len(visible) > shown[0]:
                on_text(visible[shown[0] :])
                shown[0] = len(visible)
        return found

    generated = generate_ids(
        model, ids, max_new_tokens, sampler_obj, stop_token_id=end_id, pad_id=pad_id, stop_when=stop_when
    )
    text, _ = cut_at_stop(text_of(generated), stop)
    if on_text is not None and len(text) > shown[0]:
        on_text(text[shown[0] :])
    return text


def reply_special_ids(run):
    """`(start id or None, end-of-text id or None)` of `generate_reply`: an SFT run's own, else the tokenizer's."""
    settings = sft_settings(run) or {}
    end_id = settings.get("end_token_id", getattr(run.tokenizer, "end_token_id", None))
    start_id = settings.get("start_token_id", getattr(run, "start_token_id", None))
    return start_id, end_id


def reply_prompt_ids(run, prompt, history=(), system=None, raw=False):
    """The token ids `generate_reply` decodes from: the run's template applied, or the raw prompt.

    Args:
        run: see `generate_reply`.
        prompt: the user's new prompt.
        history: earlier `(prompt, response)` turns.
        system: a system message, or `None`.
        raw: no template (also for runs that have none): the start token, if
            any, then the prompt's tokens (the end-of-text id for an empty one).

    Returns:
        A list of ints (not cut to the model's context).
    """

    check_utf8_text(prompt, "the prompt")
    if system is not None:
        check_utf8_text(system, "the system message")
    template = None if raw else run_template(run)
    tokenizer = run.tokenizer
    start_id, end_id = reply_special_ids(run)
    if template is None:
        ids = ([start_id] if start_id is not None else []) + tokens_to_list(tokenizer.tokenize([prompt]))[0]
        if not ids:
            pad_id = getattr(tokenizer, "pad_token_id", 0) or 0
            ids = [end_id if end_id is not None else pad_id]
        return [int(i) for i in ids]
    conversation = Conversation(list(history), system=system)
    pieces = conversation_pieces(template, [conversation], next_prompts=[prompt])
    return [int(i) for i in encode_pieces(pieces, tokenizer, end_id, start_id)[0][0]]
