"""`klm export RUN OUT --format hf`: a Hugging Face Transformers folder, verified by Transformers.

keras-hub's own exporters (`keras_hub.src.utils.transformers.export`) write
`config.json`, `model.safetensors` and the tokenizer files for the
architectures they know (in the installed keras-hub: GPT-2, Llama 3, Mistral,
Qwen 2, Qwen 3.5, Gemma 1/3/4). The folder is written under a temporary name
beside OUT; a fresh Python process that imports only `transformers` and
`torch` loads it (`AutoModelForCausalLM`, `AutoTokenizer`) and computes
logits on fixed token ids, which must match the Keras model's (max abs
difference <= 1e-4 in float32); only then is the folder renamed to OUT. A
failed check leaves nothing behind.

klm's own architectures (`KlmCausalLM`) are refused: keras-hub has no
exporter for them and klm's tokenizers (word, WordPiece, SentencePiece,
byte) have no Transformers counterpart, so no folder would load as an exact
equivalent.
"""

import json
import os
import shutil
import sys
import tempfile

import numpy as np

from klm.errors import ConfigError
from klm.export.cleanup import make_owned_dir, owned_temp_dir, run_child, stop_on_signals, sweep_stale
from klm.pretrained.checkpoint import load_checkpoint
from klm.sft import jinja_export
from klm.sft.chat_template import ChatTemplate, checkpoint_chat_template
from klm.sft.prompt_template import template_from_dict

TOLERANCE = 1e-4
# The verification's scratch folder in $TMPDIR (named with the export's pid: see klm.export.cleanup).
VERIFY_PREFIX = "klm-hf-verify-"
VERIFY_SCRIPT = r"""
import json, sys
import numpy as np
import torch
import transformers

folder, ids_path, out_path, text, messages = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
model.eval()
ids = torch.as_tensor(np.load(ids_path), dtype=torch.long)
with torch.no_grad():
    logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.float().numpy()
np.save(out_path, logits)
tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
text_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
chat = None
if messages != "null":
    chat = tokenizer.apply_chat_template(json.loads(messages), tokenize=False)
imported = sorted(m for m in ("keras", "keras_hub", "klm", "tensorflow", "jax") if m in sys.modules)
print(json.dumps({"model_class": type(model).__name__, "tokenizer_class": type(tokenizer).__name__,
                  "text_ids": text_ids, "chat": chat, "imported": imported}))
"""
SAMPLE_TEXT = "The history of language models, in 3 short sentences."


def exportable(model, tokenizer):
    """`None` when keras-hub can export `model` + `tokenizer` to Transformers, else the reason."""
    from keras_hub.src.utils.transformers.export.hf_exporter import MODEL_CONFIGS, MODEL_TOKENIZER_CONFIGS

    from klm.models import KlmCausalLM, KlmClassifier

    if isinstance(model, KlmClassifier):
        return "it is a classifier; --format hf exports causal language models"
    if isinstance(model, KlmCausalLM):
        return (
            "it is klm's own architecture (KlmCausalLM): keras-hub has no Transformers exporter for it and klm's "
            "tokenizers have no Transformers format, so no exactly equivalent folder can be written. Start a run "
            "from a pretrained checkpoint (`--init-from gpt2_base_en`, `--from hf://...`) to export it, or export "
            "a TF SavedModel (the default --format)"
        )
    backbone = getattr(model, "backbone", None)
    name = type(backbone).__name__
    if name not in MODEL_CONFIGS:
        return (
            f"keras-hub {_keras_hub_version()} has no Transformers exporter for {name} "
            f"(it has: {', '.join(sorted(MODEL_CONFIGS))})"
        )
    if type(tokenizer).__name__ not in MODEL_TOKENIZER_CONFIGS:
        return f"keras-hub has no Transformers exporter for the tokenizer {type(tokenizer).__name__}"
    return None


def _keras_hub_version():
    import keras_hub

    return keras_hub.__version__


def _write(model, tokenizer, folder, chat_template=None, special_tokens=None):
    from keras_hub.src.utils.transformers.export.hf_exporter import export_backbone, export_tokenizer

    export_backbone(model.backbone, folder, include_lm_head=True, tokenizer=tokenizer)
    export_tokenizer(tokenizer, folder)
    config_path = os.path.join(folder, "config.json")
    with open(config_path) as f:
        config = json.load(f)
    # keras-hub's GPT-2 exporter names no architecture; Transformers' Auto
    # classes work without one, but other tools read it.
    if config.get("model_type") == "gpt2" and "architectures" not in config:
        config["architectures"] = ["GPT2LMHeadModel"]
    pad = getattr(tokenizer, "pad_token_id", None)
    if pad is not None and "pad_token_id" not in config:
        config["pad_token_id"] = int(pad)
    with open(config_path, "w") as f:
        json.dump(config, f, indent=2)
    if chat_template is not None:
        _write_chat_template(folder, chat_template, special_tokens or {})


def _write_chat_template(folder, chat_template, special_tokens):
    """Puts the chat template where Transformers reads it: `chat_template` in `tokenizer_config.json`.

    The special tokens the template uses (`eos_token`, ...) are added when the
    exported tokenizer config lacks them, so Transformers renders it as klm does.
    """
    path = os.path.join(folder, "tokenizer_config.json")
    config = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    config["chat_template"] = chat_template
    for name, value in special_tokens.items():
        config.setdefault(name, value)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2, ensure_ascii=False)


def _publishable(folder):
    """Gives a `mkdtemp` folder (mode 0700) the permissions `mkdir` would: 0777 less the umask."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder, 0o777 & ~umask)


def _verify(model, tokenizer, folder, timeout=600, chat=None):
    import keras

    vocab = int(model.backbone.vocabulary_size)
    ids = np.random.default_rng(0).integers(0, vocab, size=(2, 16)).astype("int64")

    with owned_temp_dir(VERIFY_PREFIX) as scratch:
        ids_path, out_path = os.path.join(scratch, "ids.npy"), os.path.join(scratch, "logits.npy")
        np.save(ids_path, ids)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KERAS_", "PYTHONPATH"))}
        env["HF_HUB_OFFLINE"] = "1"
        process = run_child(
            [
                sys.executable,
                "-I",
                "-c",
                VERIFY_SCRIPT,
                os.path.abspath(folder),
                ids_path,
                out_path,
                SAMPLE_TEXT,
                json.dumps(chat["messages"] if chat else None),
            ],
            timeout_s=timeout,
            env=env,
            cwd=scratch,
        )
        if process.returncode != 0:
            raise ConfigError(
                "Transformers could not load the exported folder (nothing was written):\n" + process.stderr[-3000:]
            )
        report = json.loads(process.stdout.strip().splitlines()[-1])
        theirs = np.load(out_path)
    ours = model({"token_ids": ids.astype("int32"), "padding_mask": np.ones_like(ids, "int32")}, training=False)
    ours = keras.ops.convert_to_numpy(keras.ops.cast(ours, "float32"))
    diff = float(np.abs(ours - theirs).max())
    tolerance = TOLERANCE if model.dtype_policy.compute_dtype == "float32" else 5e-2 * max(1.0, np.abs(ours).max())
    if not diff <= tolerance:
        raise ConfigError(
            f"The exported folder's logits differ from klm's (max abs diff {diff:.3g} > {tolerance:.3g}); "
            "nothing was written."
        )
    rendered = report.pop("chat")
    if chat is not None and rendered != chat["expected"]:
        raise ConfigError(
            "Transformers renders the exported chat template differently from klm (nothing was written): "
            f"expected {chat['expected'][:200]!r}, got {str(rendered)[:200]!r}"
        )
    ours_ids = np.asarray(tokenizer.tokenize(SAMPLE_TEXT)).reshape(-1).tolist()
    report.update(max_abs_diff=diff, tolerance=tolerance, tokenizer_ids_match=ours_ids == report.pop("text_ids"))
    return report


def export_hf(model, tokenizer, out_dir, verify=True, source=None, chat_template=None):
    """Writes `model` + `tokenizer` as a Transformers folder `out_dir` (verified, then renamed into place).

    Args:
        model: a keras-hub `CausalLM` (LoRA adapters are folded in: the
            exporters read each layer's merged kernel).
        tokenizer: its keras-hub tokenizer.
        out_dir: the folder to create; it must not exist (or be empty).
        verify: load it with Transformers in a fresh process and compare logits.
        source: optional description of what was exported (kept in the result).
        chat_template: optional `{"text", "note", "messages", "expected"}`:
            the Jinja chat template to write into `tokenizer_config.json`
            (`note` says where it came from, or why none was written when
            `text` is `None`); verification checks that Transformers'
            `apply_chat_template(messages)` gives `expected`.

    Returns:
        A dict: `path`, `files`, `verified`, `max_abs_diff`, `tolerance`,
        `model_class`, `tokenizer_class`, `tokenizer_ids_match`.

    Raises:
        ConfigError: an architecture keras-hub cannot export, an existing
            OUT, or a failed verification.
    """
    reason = exportable(model, tokenizer)
    if reason:
        raise ConfigError(f"Cannot export to Hugging Face format: {reason}.")
    out_dir = os.path.abspath(os.fspath(out_dir))
    if os.path.exists(out_dir) and (not os.path.isdir(out_dir) or os.listdir(out_dir)):
        raise ConfigError(f"Expected a new or empty output folder. Received: OUT={out_dir!r} (exists)")

    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    # Folders a killed export left (named with its pid; klm's names only), then this export's own.
    prefix = f".{os.path.basename(out_dir)}.klm-"
    sweep_stale(parent, prefix, suffix=".tmp")
    sweep_stale(tempfile.gettempdir(), VERIFY_PREFIX)
    with stop_on_signals():
        return _export_into(
            model, tokenizer, out_dir, verify, source, chat_template, make_owned_dir(prefix, parent, ".tmp")
        )


def _export_into(model, tokenizer, out_dir, verify, source, chat_template, tmp):
    """`export_hf` into the temporary folder `tmp`, renamed to `out_dir` once verified (removed on failure)."""
    try:
        _publishable(tmp)
        text = (chat_template or {}).get("text")
        _write(model, tokenizer, tmp, chat_template=text, special_tokens=(chat_template or {}).get("special_tokens"))
        result = {"path": out_dir, "format": "hf", "source": source, "verified": False}
        if chat_template is not None:
            result["chat_template"] = chat_template["note"]
        if verify:
            result.update(_verify(model, tokenizer, tmp, chat=chat_template if text else None), verified=True)
        result["files"] = sorted(os.listdir(tmp))
        if os.path.isdir(out_dir):
            os.rmdir(out_dir)
        os.replace(tmp, out_dir)
        return result
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def export_checkpoint_hf(spec, out_dir, verify=True, which="best"):
    """`klm export RUN OUT --format hf`: loads `spec` (any checkpoint name) and calls `export_hf`."""

    checkpoint = load_checkpoint(spec, which=which)
    if not checkpoint.mode.generates:
        raise ConfigError(
            f"Cannot export to Hugging Face format: {spec} is a {checkpoint.task} run; --format hf exports causal "
            f"language models. Received: RUN={os.fspath(spec)!r}"
        )
    return export_hf(
        checkpoint.model,
        checkpoint.tokenizer,
        out_dir,
        verify=verify,
        source=checkpoint.source,
        chat_template=_chat_template_of(checkpoint, spec),
    )


def _chat_template_of(checkpoint, spec):
    """The chat template to export with `checkpoint` (see `export_hf`), or `None` when it has none."""

    config = checkpoint.config
    prompt_settings = checkpoint.mode.prompt_settings(config)
    if prompt_settings is not None:  # an SFT run: the template it was trained with
        template = template_from_dict(prompt_settings["template"])
        end_id = prompt_settings.get("end_token_id")
        end_text = "" if end_id is None else str(checkpoint.tokenizer.id_to_token(int(end_id)))
    else:
        name = (config.get("pretrained") or {}).get("name") if checkpoint.run is not None else spec
        try:
            template = checkpoint_chat_template(name) if name and not str(name).startswith("hf://") else None
        except ConfigError as e:
            return {"text": None, "note": f"the checkpoint's chat template was not exported: {e}"}
        if template is None:
            return None
        end_text = ""
    text, note = jinja_export.jinja_for_template(template, end_text)
    if text is None:
        return {"text": None, "note": note}
    special_tokens = {}
    if isinstance(template, ChatTemplate):
        special_tokens = template.special_tokens
        messages = jinja_export.probe_messages(system=False)
        expected = template.render(messages, add_generation_prompt=False)
    else:
        messages = jinja_export.probe_messages(system=True)
        expected = jinja_export.klm_rendering(template, end_text, system=True)
    return {"text": text, "note": note, "messages": messages, "expected": expected, "special_tokens": special_tokens}


def format_result(result):
    """Human-readable summary for `klm export --format hf`."""
    source = result.get("source") or {}
    lines = [
        f"Exported {source.get('name', '')} ({source.get('architecture', '?')}) to {result['path']} "
        f"(Hugging Face Transformers format): {', '.join(result['files'])}"
    ]
    if result["verified"]:
        lines.append(
            f"Verified in a process importing only transformers and torch ({result['model_class']}, "
            f"{result['tokenizer_class']}): max |transformers - klm| logits {result['max_abs_diff']:.2g} "
            f"(<= {result['tolerance']:.2g}); tokenizer ids "
            + ("match" if result["tokenizer_ids_match"] else "DIFFER on the sample text")
        )
    else:
        lines.append("Not verified (--no-verify).")
    if result.get("chat_template"):
        lines.append(f"Chat template: {result['chat_template']}")
    lines.append(f"Load it with: transformers.AutoModelForCausalLM.from_pretrained({result['path']!r})")
    return "\n".join(lines)
