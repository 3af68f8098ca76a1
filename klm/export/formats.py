"""`export_to(format, SOURCE, OUT)`: one entry point for every `klm export --format`, a dispatch by format.

| format     | module                         | what OUT holds                                 | checked in|
|---|---|---|---|
| savedmodel | `klm.export.pipeline`          | `OUT/<version>/saved_model.pb` (TF Serving)    | TensorFlow only|
| hf         | `klm.export.hf_format`         | `config.json`, `model.safetensors`, tokenizer  | transformers + torch|
| onnx       | `klm.export.onnx_format`       | `model.onnx`, `tokenizer.json`                 | ONNX Runtime only|
| litert     | `klm.export.litert_format`     | `model.tflite`, `tokenizer.json`               | ai-edge-litert only|
| gguf       | `klm.export.gguf_format`       | `model.gguf` (tokenizer and template inside)   | llama-cpp-python only|

`savedmodel` takes klm run folders; the others take any checkpoint name
(`klm.pretrained.load_checkpoint`: a klm run, a keras-hub preset,
`hf://ORG/NAME`, a local Transformers or keras-hub folder). OUT is refused
when it exists (a file, or a folder with anything in it) before anything is
loaded, and so is a missing optional package (`pip install klm[onnx]`,
`klm[litert]`, `klm[gguf]`).

Quantized runs (`klm quantize`, and LoRA runs trained on top of one) are
refused for every format, before anything is loaded: each exporter writes
the float weights it reads from the model, so the file would be a float
model (an f32 export of a quantized run) - neither the model that was
quantized and measured nor a smaller one (`refuse_quantized`).
"""

import json
import os

from klm.errors import ConfigError
from klm.export.gguf_format import export_gguf
from klm.export.hf_format import export_checkpoint_hf
from klm.export.litert_format import export_litert
from klm.export.onnx_format import export_onnx
from klm.export.options import FORMATS, ExportOptions  # noqa: F401 (FORMATS re-exported)
from klm.export.pipeline import export_run
from klm.export.publish import check_new_output, require_runtime
from klm.pretrained.checkpoint import load_checkpoint


def export_to(
    export_format,
    source,
    out_dir,
    checkpoint="best",
    verify=True,
    version=None,
    portable=False,
    max_new_tokens=8,
    gguf_type=None,
    sequence_length=None,
    backend=None,
):
    """Exports `source` to `out_dir` in `export_format`; returns the format's result dict (with `format`).

    Args:
        export_format: one of `FORMATS`.
        source: a klm run folder (every format) or, except for
            `savedmodel`, any checkpoint name `load_checkpoint` takes.
        out_dir: the output folder (`savedmodel`: the model base path that
            gets a new version; others: a new folder).
        checkpoint: `"best"` or `"last"` (klm runs).
        verify: check the export in its own runtime before publishing it.
        version, portable: `savedmodel` only.
        max_new_tokens: greedy tokens compared by the `savedmodel` and
            `gguf` checks.
        gguf_type: `gguf` only: `"f32"`, `"f16"`, `"q8_0"` or `None`.
        sequence_length: `litert` only: the fixed sequence length.
        backend: the Keras backend (recorded).

    Example:

    ```python
    export_to("onnx", "runs/lm", "out/lm-onnx")
    export_to("gguf", "hf://HuggingFaceTB/SmolLM2-135M", "out/smollm", gguf_type="q8_0")
    ```
    """
    options = ExportOptions(
        source=source,
        out_dir=out_dir,
        format=export_format,
        checkpoint=checkpoint,
        verify=verify,
        version=version,
        portable=portable,
        max_new_tokens=max_new_tokens,
        gguf_type=gguf_type,
        litert_sequence_length=sequence_length,
        backend=backend,
    )
    return export_with(options)


def export_with(options):
    """Runs the export `options` (an `ExportOptions`, already checked) describes; returns `export_to`'s result."""
    source, out_dir, export_format, verify = options.source, options.out_dir, options.format, options.verify
    refuse_quantized(source, export_format)
    if export_format == "savedmodel":
        return dict(export_run(options.savedmodel_config), format="savedmodel")
    if export_format == "hf":
        return export_checkpoint_hf(source, out_dir, verify=verify, which=options.checkpoint)

    check_new_output(out_dir)
    if export_format == "onnx":
        require_runtime("onnx", "onnx", "Exporting to ONNX")
        require_runtime("onnxruntime", "onnx", "Checking the ONNX export")
    elif export_format == "litert":
        require_runtime("ai_edge_litert", "litert", "Checking the LiteRT export")
    else:
        require_runtime("gguf", "gguf", "Writing GGUF")
        if verify:
            require_runtime("llama_cpp", "gguf", "Checking the GGUF export (llama-cpp-python)")

    loaded = load_checkpoint(source, which=options.checkpoint)
    if export_format == "onnx":
        result = export_onnx(loaded, out_dir, verify=verify)
    elif export_format == "litert":
        result = export_litert(loaded, out_dir, verify=verify, sequence_length=options.litert_sequence_length)
    else:
        result = export_gguf(
            loaded, out_dir, gguf_type=options.gguf_type, verify=verify, max_new_tokens=options.max_new_tokens
        )
    result["source"] = loaded.source
    return result


def refuse_quantized(source, export_format):
    """Raises `ConfigError` when `source` is a quantized klm run (its `config.json` has a `quantization` entry).

    klm's exporters (ONNX, LiteRT, GGUF, SavedModel, Transformers) write the
    float weights they read from the model; none writes Keras's int8/int4
    kernels with their scales (ONNX int8 and GGUF q8_0 hold different
    layouts: a re-quantization, not the measured model). So a quantized run
    is refused by name, with what to do instead.
    """
    config_path = os.path.join(str(source), "config.json")
    if not os.path.isfile(config_path):
        return  # checkpoints (presets, hf://, Transformers folders) are never quantized by klm
    with open(config_path) as f:
        quantization = json.load(f).get("quantization")
    if not quantization:
        return
    mode = quantization.get("mode")
    origin = quantization.get("source")
    advice = (
        f"export the float run it was quantized from ({origin})"
        if origin and not quantization.get("from_quantized_run")
        else "export the float model it came from"
    )
    gguf_hint = " (for a smaller GGUF, export that with --gguf-type q8_0)" if export_format == "gguf" else ""
    raise ConfigError(
        f"{source} is a quantized run ({mode}); klm export writes float weights only, so --format {export_format} "
        f"would be an f32 export of a quantized run: neither the quantized model nor a smaller one. Instead, "
        f"{advice}{gguf_hint}. Received: RUN={str(source)!r} --format={export_format} quantization={mode}"
    )
