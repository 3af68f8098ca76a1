"""`quantize_run`: a language model -> a quantized run folder, measured before and after.

Keras quantizes; klm chooses what and measures. `model.quantize(mode)` replaces
each `Dense` kernel (klm's `FusedDense` and keras-hub's projections) and each
`Embedding`/`ReversibleEmbedding` table (the tied output projection included)
by Keras's quantized variables:

- `int8`: per-output-channel int8 weights, activations quantized per token
  (abs-max) at run time, int8 x int8 matmuls.
- `int4`: 4-bit weights packed two per byte, with a scale and zero point per
  `group_size` input columns; activations stay float (weight-only).
- `float8`: Keras's FP8 *training* scheme (float8 e4m3 fake quantization of
  `Dense` inputs and kernels with delayed scaling); the kernels stay float32,
  so it does not make the model smaller (the summary says so).
- `gptq` / `awq`: Keras's calibrated 4-bit (GPTQ: 2/3/4/8-bit) algorithms on
  the `Dense` layers of the transformer blocks, block by block on windows of
  `--calibration` text; the token embedding is quantized to int8 first
  (Keras's GPTQ/AWQ leave embeddings alone, and a small model's embedding is
  a third of its bytes).

The result is an ordinary run folder (`config.json` with a `"quantization"`
entry, `tokenizer/`, `best.keras`, `summary.json`): `klm evaluate`,
`klm generate`, `klm export` and `klm finetune --from OUT --lora-rank R` read
it. Keras saves quantized layers in `.keras` files natively; klm's and
keras-hub's backbones record each layer's quantized dtype policy in their
config (a `DTypePolicyMap`), so the file reloads on any backend.
"""

import math
import os
import shutil
import time
from pathlib import Path

import numpy as np

from klm import backend as backend_lib
from klm import runs
from klm.errors import ConfigError, RunDirError
from klm.evaluate import evaluate_run
from klm.generate import generate_ids, position_limit, tokens_to_list
from klm.pretrained import load_checkpoint, save_tokenizer, token_stream
from klm.pretrained.resolve import classify
from klm.quantize.config import CALIBRATED_MODES, QuantizeConfig


def log(message):
    print(message, flush=True)


def quantization_of(model):
    """`{layer path: quantization mode}` of the quantized layers of `model` (empty: not quantized)."""
    return {
        layer.path: layer.quantization_mode
        for layer in model._flatten_layers(include_self=False)
        if getattr(layer, "quantization_mode", None) is not None
    }


def inherited_quantization(source, model):
    """`{"quantization": ...}` for the config of a run trained from `model` (loaded from `source`), else `{}`.

    A run fine-tuned with LoRA from a quantized run (QLoRA) keeps the frozen
    quantized weights: its `config.json` says so, so that `klm export` and
    `klm quantize` treat it as the quantized model it is.
    """
    layers = quantization_of(model)
    if not layers:
        return {}
    counts = {}
    for mode in layers.values():
        counts[mode] = counts.get(mode, 0) + 1
    recorded = {}
    config_path = Path(source) / runs.CONFIG_FILE
    if config_path.is_file():
        recorded = runs.read_json(config_path).get("quantization") or {}
    return {
        "quantization": {
            "mode": recorded.get("mode") or max(counts, key=counts.get),
            "layer_modes": counts,
            "source": os.path.abspath(source) if os.path.exists(source) else source,
            "from_quantized_run": bool(recorded),
        }
    }


def weight_bytes(model):
    """Bytes of `model`'s variables as stored (each variable once; int4 is packed two per byte)."""
    import keras

    seen, total = set(), 0
    for variable in model.weights:
        if id(variable) in seen:
            continue
        seen.add(id(variable))
        itemsize = np.dtype(keras.backend.standardize_dtype(variable.dtype).replace("bfloat16", "float16")).itemsize
        total += math.prod(int(d) for d in variable.shape) * itemsize
    return total


def quantize_model(model, mode, group_size=128, calibration_tokens=None, tokenizer=None, config=None):
    """Quantizes `model` (a causal LM) in place with Keras's `model.quantize`.

    Args:
        model: `KlmCausalLM` or a keras-hub `CausalLM`, built, not quantized.
        mode: one of `klm.quantize.MODES`.
        group_size: int4/gptq/awq group size (-1: per output channel).
        calibration_tokens: gptq/awq: 1-D int array of calibration text.
        tokenizer: gptq/awq: the model's tokenizer (Keras's configs require one).
        config: the `QuantizeConfig` (gptq/awq: bits and calibration windows).

    Raises:
        RunDirError: the model is already quantized.
        ConfigError: a mode Keras cannot apply to this model (the message says why).
    """
    import warnings

    import keras

    already = quantization_of(model)
    if already:
        raise RunDirError(
            f"The model is already quantized ({sorted(set(already.values()))[0]}); quantize the float model it came "
            f"from instead. Received: {len(already)} quantized layers, e.g. {next(iter(already))!r}"
        )
    if keras.backend.standardize_dtype(model.compute_dtype) != "float32" and mode == "float8":
        raise ConfigError(f"--mode float8 needs a float32 model. Received: dtype={model.dtype_policy.name}")
    block = None if group_size == -1 else group_size
    # klm's FusedDense and TokenEmbedding are Dense/ReversibleEmbedding subclasses with the same variables:
    # `type_check=False` lets Keras quantize them (it refuses subclasses by default).
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have a `quantize` method implemented")
        if mode == "int8":
            model.quantize("int8", type_check=False)
        elif mode == "int4":
            model.quantize(config=keras.quantizers.Int4QuantizationConfig(block_size=block), type_check=False)
        elif mode == "float8":
            model.quantize("float8", type_check=False)
        else:
            _quantize_calibrated(model, mode, block, calibration_tokens, tokenizer, config)
    quantized = quantization_of(model)
    if not quantized:
        raise ConfigError(f"Keras quantized no layer of {type(model).__name__}. Received: --mode={mode}")
    return quantized


def _quantize_calibrated(model, mode, block, calibration_tokens, tokenizer, config):
    import keras

    backbone = model.backbone
    embedding = getattr(backbone, "token_embedding", None)
    if embedding is None or not hasattr(backbone, "transformer_layers"):
        raise ConfigError(
            f"--mode {mode} needs a backbone with token_embedding and transformer_layers; "
            f"{type(backbone).__name__} has none. Received: --mode={mode}"
        )
    embedding_path = embedding.path
    model.quantize("int8", filters=lambda layer: layer.path == embedding_path, type_check=False)
    windows = int(config.calibration_seq_len)
    if calibration_tokens is None or len(calibration_tokens) < windows + 1:
        raise ConfigError(
            f"--calibration holds {0 if calibration_tokens is None else len(calibration_tokens)} tokens; "
            f"--mode {mode} needs at least --calibration-seq-len ({windows}) + 1. Received: "
            f"--calibration={config.calibration!r}"
        )
    dataset = [np.asarray(calibration_tokens, "int32")]
    common = dict(
        weight_bits=4 if mode == "awq" else int(config.weight_bits),
        num_samples=int(config.calibration_samples),
        sequence_length=windows,
        group_size=-1 if block is None else block,
    )
    quantizer_config = (
        keras.quantizers.GPTQConfig(dataset, tokenizer, **common)
        if mode == "gptq"
        else keras.quantizers.AWQConfig(dataset, tokenizer, **common)
    )
    # Only the projections (Dense/EinsumDense; klm's FusedDense is a Dense): the embedding is int8 already, and
    # with type_check=False Keras would otherwise try every layer, a keras-hub tokenizer layer included.
    projections = (keras.layers.Dense, keras.layers.EinsumDense)
    model.quantize(
        config=quantizer_config,
        filters=lambda layer: isinstance(layer, projections) and layer.path != embedding_path,
        type_check=False,
    )
    _save_zero_points(model)


def _save_zero_points(model):
    """Makes keras-hub's GPTQ/AWQ `Dense`/`EinsumDense` layers save their zero points.

    Keras 3.15.1 leaves `kernel_zero` out of a GPTQ/AWQ layer's saved variables,
    so the `.keras` file does not reload. klm's `FusedDense` saves it itself;
    keras-hub's layers are Keras's own classes, so each quantized instance gets
    the same saving function (`klm.layers.fused_dense.save_calibrated_variables`).
    """
    import functools

    from klm.layers.fused_dense import CALIBRATED_MODES, FusedDense, save_calibrated_variables

    for layer in model._flatten_layers(include_self=False):
        if getattr(layer, "quantization_mode", None) in CALIBRATED_MODES and not isinstance(layer, FusedDense):
            # object.__setattr__: an instance attribute, not tracked by Keras (it is no layer state).
            object.__setattr__(layer, "save_own_variables", functools.partial(save_calibrated_variables, layer))


def generation_speed(checkpoint, new_tokens, prompt="The history of"):
    """Greedy generation tokens/s of `checkpoint` (one warm-up, then the best of two timed runs)."""
    import keras_hub

    model, tokenizer = checkpoint.model, checkpoint.tokenizer
    ids = tokens_to_list(tokenizer.tokenize([prompt]))[0]
    start = checkpoint.start_token_id if hasattr(checkpoint, "start_token_id") else None
    ids = ([start] if start is not None else []) + list(ids) or [0]
    limit = position_limit(model)
    if limit is not None:
        new_tokens = min(new_tokens, limit - len(ids))
    sampler = keras_hub.samplers.GreedySampler()
    generate_ids(model, ids, min(4, new_tokens), sampler)  # traces/compiles the decoding step
    best = None
    for _ in range(2):
        began = time.perf_counter()
        generated = generate_ids(model, ids, new_tokens, sampler)  # no stop token: always new_tokens
        elapsed = time.perf_counter() - began
        best = elapsed if best is None else min(best, elapsed)
    return {"tokens": len(generated), "seconds": best, "tokens_per_second": len(generated) / best}


def _perplexity(spec, config):

    result = evaluate_run(spec, config.eval_data, backend=config.backend, seq_len=config.seq_len)
    return {key: result[key] for key in ("loss", "perplexity", "tokens", "evaluated_tokens") if key in result}


def quantize_run(config: QuantizeConfig):
    """Quantizes the model `config.source` names into the new run folder `config.out_dir`.

    Measures, before and after: weight bytes, perplexity on `eval_data` (as
    `klm evaluate` computes it) and greedy generation tokens/s. The folder is
    written under a temporary name and renamed at the end: a failure leaves
    nothing behind.

    Returns:
        The summary dict (also `OUT/summary.json`).
    """

    backend = backend_lib.use_backend(config.backend)

    kind = classify(config.source)
    source_config = runs.read_run_config(config.source) if kind == "klm_run" else None
    if source_config is not None:
        _check_source_run(config, source_config)
    log(f"klm quantize: backend={backend} mode={config.mode} source={config.source}")
    checkpoint = load_checkpoint(config.source)
    if not checkpoint.mode.generates:
        raise RunDirError(
            f"klm quantize takes a language model; {config.source} is a {checkpoint.task} run. "
            f"Received: RUN={config.source!r}"
        )
    model = checkpoint.model
    if getattr(model, "preprocessor", None) is not None:
        model.preprocessor = None  # the tokenizer goes to tokenizer/, as in every run from a checkpoint
    before = {"weight_bytes": weight_bytes(model), "dtype": model.dtype_policy.name}
    log(f"before: {before['weight_bytes']:,} weight bytes ({before['dtype']})")
    if config.eval_data:
        before.update(_perplexity(config.source, config))
        log(f"before: perplexity {before['perplexity']:.3f} on {config.eval_data}")
    if config.speed_tokens:
        before["generation"] = generation_speed(checkpoint, config.speed_tokens)
        log(f"before: {before['generation']['tokens_per_second']:.1f} tokens/s (greedy)")

    calibration_tokens = None
    if config.mode in CALIBRATED_MODES:
        calibration_tokens = token_stream(checkpoint, config.calibration)
        log(f"calibration: {len(calibration_tokens):,} tokens from {config.calibration}")
    began = time.perf_counter()
    log(f"quantizing ({config.mode}) ...")
    layers = quantize_model(
        model,
        config.mode,
        group_size=config.group_size,
        calibration_tokens=calibration_tokens,
        tokenizer=checkpoint.tokenizer,
        config=config,
    )
    quantize_seconds = time.perf_counter() - began
    modes = sorted(set(layers.values()))
    quantization = {
        "mode": config.mode,
        "layer_modes": {mode: sum(1 for m in layers.values() if m == mode) for mode in modes},
        "group_size": config.group_size if config.mode in ("int4", "gptq", "awq") else None,
        "weight_bits": {"int8": 8, "int4": 4, "float8": 8, "gptq": config.weight_bits, "awq": 4}[config.mode],
        "calibration": config.calibration,
        "source": os.path.abspath(config.source) if os.path.exists(config.source) else config.source,
        "backend": backend,
    }
    if config.mode in CALIBRATED_MODES:
        quantization.update(
            calibration_samples=config.calibration_samples, calibration_seq_len=config.calibration_seq_len
        )

    out = Path(config.out_dir)
    with runs.atomic_path(out) as tmp:
        tmp = Path(tmp)
        tmp.mkdir()
        if source_config is not None:
            run_config = dict(source_config)
            shutil.copytree(Path(config.source) / runs.TOKENIZER_DIR, tmp / runs.TOKENIZER_DIR)
        else:
            run_config = {"task": "causal_lm", "pretrained": checkpoint.source}
            save_tokenizer(checkpoint.tokenizer, tmp / runs.TOKENIZER_DIR)
        run_config["quantization"] = quantization
        runs.write_json(tmp / runs.CONFIG_FILE, run_config)
        runs.save_model(model, tmp / "best.keras")
        # What the file holds, reloaded: what every command will see.
        runs.write_json(tmp / runs.SUMMARY_FILE, {"quantization": quantization})
        reloaded = load_checkpoint(str(tmp))
        after = {
            "weight_bytes": weight_bytes(reloaded.model),
            "file_bytes": os.path.getsize(tmp / "best.keras"),
            "quantize_seconds": quantize_seconds,
        }
        log(f"after: {after['weight_bytes']:,} weight bytes ({after['weight_bytes'] / before['weight_bytes']:.3f}x)")
        if config.eval_data:
            after.update(_perplexity(str(tmp), config))
            log(f"after: perplexity {after['perplexity']:.3f} ({after['perplexity'] / before['perplexity']:.4f}x)")
        if config.speed_tokens:
            after["generation"] = generation_speed(reloaded, config.speed_tokens)
            ratio = after["generation"]["tokens_per_second"] / before["generation"]["tokens_per_second"]
            log(f"after: {after['generation']['tokens_per_second']:.1f} tokens/s ({ratio:.2f}x)")
        summary = {
            "task": "causal_lm",
            "backend": backend,
            "quantization": quantization,
            "before": before,
            "after": after,
            "weight_bytes_ratio": after["weight_bytes"] / before["weight_bytes"],
            "load_average_1min": os.getloadavg()[0],
        }
        if config.eval_data:
            summary["perplexity_ratio"] = after["perplexity"] / before["perplexity"]
            summary["eval_data"] = config.eval_data
        if config.speed_tokens:
            summary["tokens_per_second_ratio"] = (
                after["generation"]["tokens_per_second"] / before["generation"]["tokens_per_second"]
            )
        runs.write_json(tmp / runs.SUMMARY_FILE, summary)
    log(f"wrote {out}")
    return summary


def _check_source_run(config, source_config):
    if source_config.get("quantization"):
        raise RunDirError(
            f"{config.source} is already quantized ({source_config['quantization'].get('mode')}); quantize the "
            f"float run it came from ({source_config['quantization'].get('source')}). Received: RUN={config.source!r}"
        )
    if not runs.run_task(source_config).generates:
        raise RunDirError(
            f"klm quantize takes a language model; {config.source} is a {source_config['task']} run (its "
            f"accuracy, not perplexity, would have to be checked). Received: RUN={config.source!r}"
        )
