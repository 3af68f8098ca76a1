"""The check before a version is published: which signature calls to make, and how to judge them.

`verification_calls` lists the calls the TensorFlow-only process makes
(`klm.export.worker.call_in_tensorflow_only_process`);
`compare_with_reference` compares what it got with the Keras model's
outputs (`klm.export.reference`): probabilities and log-likelihoods within
the tolerance, the same token counts, identical greedy text, top-k with
`top_k=1` equal to greedy, the same samples for the same seed, every
signature present and no blocked module imported. Imports no Keras.
"""

from klm.export.config import ExportError
from klm.tasks import get_task


def verification_calls(task, texts, prompts, max_new_tokens):
    """The signature calls that `export_run` checks (see `compare_with_reference`)."""
    if get_task(task).has_labels:
        return [{"signature": "serving_default", "inputs": {"texts": list(texts)}}]
    sample = {"prompts": list(prompts), "max_new_tokens": max_new_tokens, "temperature": 1.0, "seed": 1234}
    return [
        {"signature": "serving_default", "inputs": {"texts": list(texts)}},
        {"signature": "score", "inputs": {"texts": list(texts)}},
        {"signature": "generate", "inputs": {"prompts": list(prompts), "max_new_tokens": max_new_tokens}},
        {"signature": "generate_top_k", "inputs": dict(sample, top_k=1)},
        {"signature": "generate_top_k", "inputs": dict(sample, top_k=5)},
        {"signature": "generate_top_k", "inputs": dict(sample, top_k=5)},
    ]


def compare_with_reference(task, check, reference, labels, tolerance):
    """Compares the TensorFlow-only outputs of `verification_calls` with the Keras model's.

    Returns:
        `{output name: max abs difference}`.

    Raises:
        ExportError: with every mismatch found.
    """
    import numpy as np

    outputs = check["outputs"]
    problems = []
    expected = get_task(task).export_signatures
    missing = sorted(set(expected) - set(check.get("loaded_signatures", [])))
    if missing:
        problems.append(f"signatures missing from the SavedModel: {missing}")
    if check.get("blocked_modules_imported"):
        problems.append(f"the serving process imported {check['blocked_modules_imported']}")
    diffs = {}
    if get_task(task).has_labels:
        got = outputs[0]
        probabilities = np.asarray(got["probabilities"], dtype="float64")
        ref = np.asarray(reference["probabilities"], dtype="float64")
        if probabilities.shape != ref.shape:
            problems.append(f"probabilities have shape {probabilities.shape}, the Keras model's {ref.shape}")
        else:
            diffs["probabilities"] = float(np.max(np.abs(probabilities - ref))) if ref.size else 0.0
            if diffs["probabilities"] > tolerance:
                problems.append(
                    f"probabilities differ from the Keras model by {diffs['probabilities']:.3g} > {tolerance:g}"
                )
            label_ids = np.asarray(got["label_id"])
            if not np.array_equal(label_ids, np.argmax(probabilities, axis=-1)):
                problems.append(f"label_id {label_ids.tolist()} is not the argmax of the probabilities")
            if [labels[i] for i in label_ids] != list(got["label"]):
                problems.append(f"label {got['label']} does not name label_id {label_ids.tolist()}")
    else:
        for index, name in ((0, "serving_default"), (1, "score")):
            got = outputs[index]
            ll = np.asarray(got["log_likelihood"], dtype="float64")
            ref_ll = np.asarray(reference["log_likelihood"], dtype="float64")
            diff = float(np.max(np.abs(ll - ref_ll))) if ref_ll.size else 0.0
            diffs[f"{name}/log_likelihood"] = diff
            if diff > tolerance:
                problems.append(f"{name}: log_likelihood differs from the Keras model by {diff:.3g} > {tolerance:g}")
            if list(got["num_tokens"]) != list(reference["num_tokens"]):
                problems.append(f"{name}: num_tokens {got['num_tokens']} != Keras {reference['num_tokens']}")
            ref_ppl = np.exp(-ref_ll / np.maximum(np.asarray(reference["num_tokens"]), 1))
            ppl_diff = float(np.max(np.abs(np.asarray(got["perplexity"]) / ref_ppl - 1.0))) if ref_ll.size else 0.0
            diffs[f"{name}/perplexity_rel"] = ppl_diff
            if ppl_diff > tolerance * 10:
                problems.append(f"{name}: perplexity differs from the Keras model's by a factor {ppl_diff:.3g}")
        greedy = outputs[2]["generated_text"]
        if list(greedy) != list(reference["greedy"]):
            problems.append(
                f"generate: greedy text {greedy!r} != the Keras model's greedy text {reference['greedy']!r}"
            )
        if list(outputs[3]["generated_text"]) != list(greedy):
            problems.append(f"generate_top_k with top_k=1 gave {outputs[3]['generated_text']!r}, greedy {greedy!r}")
        if outputs[4] != outputs[5]:
            problems.append("generate_top_k gave different texts for the same seed")
    if problems:
        raise ExportError("The exported SavedModel does not match the Keras model: " + "; ".join(problems))
    return diffs
