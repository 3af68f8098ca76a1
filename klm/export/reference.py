"""What the serving signatures should return, computed with the Keras model (the check's reference).

`keras_reference` runs in the build worker next to the export. It is written
apart from the graph functions (one text at a time, NumPy log-softmax in
float64, greedy decoding without a key/value cache), so that the check in
`klm.export.verify` compares two implementations; SFT runs are compared with
`klm generate`'s own answer (`klm.generate.generate_reply`).
"""

from klm.export.signatures import (
    SENTINEL_TEXT,
    document_prefix_id,
    end_token_id,
    pad_token_id,
    sft_prompt_parts,
    start_token_id,
)
from klm.generate import generate_reply


def keras_reference(run, texts, prompts, max_new_tokens):
    """What the serving signatures should return, computed with the Keras model.

    Written apart from the graph functions (one text at a time, NumPy
    log-softmax in float64, greedy decoding without a key/value cache that
    runs the whole sequence again for each token), so that the check
    compares two implementations.
    """
    import keras
    import numpy as np

    def ids_of(text):
        out = run.tokenizer.tokenize([text, SENTINEL_TEXT])
        if hasattr(out, "to_list"):
            row = out.to_list()[0]
        elif isinstance(out, list):
            row = out[0]
        else:
            row = np.asarray(out)[0].tolist()
        return [int(i) for i in row]

    pad_id = pad_token_id(run.tokenizer)
    if run.mode.has_labels:
        rows = []
        for text in texts:
            ids = ids_of(text)[: run.seq_len]
            token_ids = np.full((1, run.seq_len), pad_id, "int32")
            token_ids[0, : len(ids)] = ids
            mask = np.zeros((1, run.seq_len), "int32")
            mask[0, : len(ids)] = 1
            logits = keras.ops.convert_to_numpy(
                run.model({"token_ids": token_ids, "padding_mask": mask}, training=False)
            ).astype("float64")[0]
            if run.multi_label:
                rows.append((1.0 / (1.0 + np.exp(-logits))).tolist())
            else:
                e = np.exp(logits - logits.max())
                rows.append((e / e.sum()).tolist())
        return {"probabilities": rows}
    end_id, prefix_id, start_id = end_token_id(run.tokenizer), document_prefix_id(run), start_token_id(run)
    log_likelihoods, counts = [], []
    for text in texts:
        ids = ids_of(text)[: run.seq_len]
        if not ids:
            log_likelihoods.append(0.0)
            counts.append(0)
            continue
        inputs = np.asarray([[prefix_id] + ids[:-1]], "int32")
        logits = keras.ops.convert_to_numpy(
            run.model({"token_ids": inputs, "padding_mask": np.ones_like(inputs)}, training=False)
        ).astype("float64")[0]
        log_probs = logits - logits.max(-1, keepdims=True)
        log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
        log_likelihoods.append(float(log_probs[np.arange(len(ids)), ids].sum()))
        counts.append(len(ids))
    if sft_prompt_parts(run) is not None:
        # An SFT run: the SavedModel must answer a raw prompt as `klm generate` does.

        greedy = [generate_reply(run, prompt, max_new_tokens=max_new_tokens, sampler="greedy") for prompt in prompts]
        return {"log_likelihood": log_likelihoods, "num_tokens": counts, "greedy": greedy}
    # Greedy decoding without a cache: the whole sequence again for each token.
    greedy = []
    for prompt in prompts:
        ids = ([] if start_id is None else [start_id]) + ids_of(prompt) or [end_id]
        new_ids = []
        for _ in range(max_new_tokens):
            sequence = np.asarray([ids + new_ids], "int32")
            logits = keras.ops.convert_to_numpy(
                run.model({"token_ids": sequence, "padding_mask": np.ones_like(sequence)}, training=False)
            )
            next_id = int(np.argmax(logits[0, -1].astype("float32")))
            if next_id == end_id:
                break
            new_ids.append(next_id)
        text = run.tokenizer.detokenize([new_ids]) if new_ids else [b""]
        text = np.asarray(text).reshape(-1)[0]
        greedy.append(text.decode("utf-8", errors="replace") if isinstance(text, bytes) else str(text))
    return {"log_likelihood": log_likelihoods, "num_tokens": counts, "greedy": greedy}
