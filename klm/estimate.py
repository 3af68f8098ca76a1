"""Size, cost and expected duration of a pretraining run, before it starts.

`estimate(config)` takes the `PretrainConfig` that `klm pretrain` would run
and returns a dict (the `klm estimate` command prints it):

- parameter count, training FLOPs per token and per step;
- tokens: in the training data, trained per epoch, in the whole run;
- memory needed: parameters + gradients + optimizer state + activations
  (an analytic estimate, framework overhead excluded), and the peak resident
  memory measured during the short run below;
- expected wall time on this machine, from a short measured run of the real
  training step: the model is built and compiled exactly as `pretrain` does
  and `model.fit` runs a few steps on the real batch shape and data. The
  first steps (compilation) are timed separately as start-up; evaluation is
  estimated at a third of a training step per token, and checkpoints from
  one timed save of the model. Loading and tokenizing the data is timed as
  it happens.

FLOPs use the usual training count (forward + backward = 3 x forward, 2
FLOPs per multiply-add, matmuls only):

    6 * (L * (4*d*d + 2*d*f) + V*d)  +  6 * L * T * d

with `L` layers, width `d`, feed-forward width `f`, vocabulary `V` and
sequence length `T` (the last term: causal attention scores and weighted
sums). It is the formula of `examples/benchmarks/reference_torch.py`; the
seed at vocabulary 12,000 and T = 35 gives 17.36 MFLOP per token.

The same estimates of a pretrained checkpoint (`klm estimate --from` /
`--init-from`) live in `klm.pretrained.checkpoint_estimate`; it builds on the helpers
here that both share: `activation_bytes_per_token`, `time_fit` (a timed
`model.fit`), `peak_rss_mib`, `log_to_stderr`, `format_si` and
`format_duration`. `format_report` prints either kind of report.
"""

import math
import statistics
import sys
import time
from pathlib import Path

from klm import backend as backend_lib
from klm import runs
from klm.config import PretrainConfig
from klm.data.lm.model_inputs import lm_model_inputs, num_tokens
from klm.errors import ConfigError
from klm.tasks import get_task
from klm.training.builders import build_causal_lm, load_pretrain_corpus
from klm.training.session import distribution, setup

MIB = 2**20


def flops_per_token(vocabulary_size, hidden_dim, num_layers, intermediate_dim, seq_len):
    """Training FLOPs per token (see the module docstring).

    Example:

    >>> round(flops_per_token(12000, 200, 2, 200, 35) / 1e6, 3)
    17.364
    """
    L, d, f, T, V = num_layers, hidden_dim, intermediate_dim, seq_len, vocabulary_size
    return 6.0 * (L * (4 * d * d + 2 * d * f) + V * d) + 6.0 * L * T * d


def activation_bytes_per_token(
    vocabulary_size,
    hidden_dim,
    num_layers,
    num_heads,
    intermediate_dim,
    seq_len,
    compute_bytes=4,
    dropout=0.0,
    lm_head=True,
    gated=False,
):
    """Bytes of activations kept for the backward pass, per token of a batch.

    Per block (Korthikanti et al. 2022, generalised to any feed-forward
    width and dtype): `p * (8d + 2f)` for the tensors the matmuls, norms and
    activation save, `2d` bytes of dropout masks when dropout is on, and the
    `heads x T` attention probabilities (`(2p + 1)` bytes each with attention
    dropout, `p` without). The output layer keeps the logits in the compute
    dtype (`p` bytes per vocabulary entry), a float32 copy for the loss (when
    `p` is 2) and the float32 gradient of the logits (4). Embeddings add
    `2 * p * d`. Framework buffers and workspace are not included.

    `gated=True` (Llama, Qwen, Mistral, Gemma: a gate and an up projection)
    keeps `3f` feed-forward values instead of `2f`; `lm_head=False` (a
    classifier: the head sees one pooled vector per sequence) drops the
    logits term.
    """
    p, d, f, V = compute_bytes, hidden_dim, intermediate_dim, vocabulary_size
    block = p * (8 * d + (3 if gated else 2) * f)
    if dropout > 0:
        block += 2 * d + num_heads * seq_len * (2 * p + 1)
    else:
        block += num_heads * seq_len * p
    head = V * (p + 4 + 4) if p != 4 else V * (4 + 4)
    if not lm_head:
        head = 0
    return num_layers * block + head + 2 * p * d


def memory_estimate(parameters, dims, batch_size, seq_len, precision="float32", optimizer="sgd", grad_accum=1):
    """Training memory in MiB: parameters, gradients, optimizer state, activations.

    Args:
        parameters: number of trainable parameters.
        dims: the backbone config (`preset_config(...)`).
        batch_size, seq_len: the batch shape.
        precision: a klm precision; variables stay float32 under mixed
            precision, the activations (and a compute copy of the weights)
            are 16-bit.
        optimizer: `"sgd"` (no state: klm's SGD has no momentum) or
            `"adamw"` (two float32 moments per parameter).
        grad_accum: gradient accumulation adds one float32 buffer.
    """
    mixed = precision.startswith("mixed")
    p = 2 if mixed else 4
    memory = {
        "parameters": 4 * parameters,
        "gradients": 4 * parameters,
        "optimizer_state": 4 * parameters * ((2 if optimizer == "adamw" else 0) + (1 if grad_accum > 1 else 0)),
        "compute_weight_copies": 2 * parameters if mixed else 0,
        "activations": batch_size
        * seq_len
        * activation_bytes_per_token(
            dims["vocabulary_size"],
            dims["hidden_dim"],
            dims["num_layers"],
            dims["num_heads"],
            dims["intermediate_dim"],
            seq_len,
            compute_bytes=p,
            dropout=dims.get("dropout", 0.0),
        ),
    }
    memory = {f"{k}_mib": v / MIB for k, v in memory.items()}
    memory["total_mib"] = sum(memory.values())
    return memory


class _StepTimer:
    """Callback factory: wall-clock stamps at each executed batch (syncs on the loss)."""

    def __init__(self, keras):
        stamps = self.stamps = []

        class Timer(keras.callbacks.Callback):
            def on_train_batch_begin(self, batch, logs=None):
                if not stamps:
                    stamps.append(time.perf_counter())

            def on_train_batch_end(self, batch, logs=None):
                float((logs or {}).get("loss", 0.0))  # waits for the step, like a logger
                stamps.append(time.perf_counter())

        self.callback = Timer()


def time_fit(keras, model, dataset, warmup_steps, measure_steps, steps_per_execution=1):
    """Runs `model.fit` for the warm-up and timed steps; `(seconds_per_step, startup_seconds, steps timed)`."""
    spe = steps_per_execution
    timer = _StepTimer(keras)
    executions = warmup_steps + math.ceil(measure_steps / spe)
    model.fit(dataset, epochs=1, steps_per_epoch=executions * spe, verbose=0, callbacks=[timer.callback], shuffle=False)
    diffs = [b - a for a, b in zip(timer.stamps, timer.stamps[1:])]
    startup = sum(diffs[:warmup_steps])
    seconds_per_step = statistics.median(diffs[warmup_steps:]) / spe
    # The steady-state cost of the warm-up executions is part of training;
    # start-up is what they took beyond it (compilation, first batches).
    startup = max(0.0, startup - warmup_steps * spe * seconds_per_step)
    return seconds_per_step, startup, len(diffs[warmup_steps:]) * spe


def peak_rss_mib():
    """The peak resident memory of this process so far, in MiB."""
    import resource

    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 / (1024 if sys.platform == "darwin" else 1)


def log_to_stderr(message):
    """The default `log` of the estimates: one line on stderr."""
    print(message, file=sys.stderr, flush=True)


def estimate(config: PretrainConfig, measure_steps=5, warmup_steps=2, log=log_to_stderr):
    """Estimates the size, memory and wall time of `pretrain(config)`.

    Loads and tokenizes the data as `pretrain` would (a tokenizer saved in an
    existing `config.run_dir` is reused; nothing is written there), builds
    and compiles the model the same way, and times `measure_steps` training
    steps of `model.fit` on the real batches after `warmup_steps` (which
    include compilation). `measure_steps=0` skips the measured run (no time
    estimate then).

    Returns:
        A dict with `parameters`, `flops_per_token`, `flops_per_step`,
        `tokens` (`in_data`, `per_epoch`, `per_step`, `total`, `steps_per_epoch`,
        `total_steps`, `epochs`), `memory_mib`, `measured` and
        `expected_seconds` (`data`, `startup`, `training`, `evaluation`,
        `checkpoints`, `total`), plus the settings they were computed for.

    Example:
    ```python
    from klm.config import PretrainConfig
    from klm.estimate import estimate
    report = estimate(PretrainConfig(data="corpus.txt", preset="tiny"), measure_steps=3)
    print(report["parameters"], report["expected_seconds"]["total"])
    ```
    """
    if measure_steps < 0 or warmup_steps < 1:
        raise ConfigError(
            f"Expected measure_steps >= 0 and warmup_steps >= 1. Received: "
            f"measure_steps={measure_steps}, warmup_steps={warmup_steps}"
        )
    from klm.models.presets import check_preset_seq_len

    check_preset_seq_len(config.preset, config.seq_len)

    backend, keras = setup(config)
    from klm import data as data_lib
    from klm.models import preset_config

    # === Data, exactly as pretrain loads it ===
    t0 = time.perf_counter()
    tokenizer = None
    tokenizer_dir = Path(config.run_dir) / runs.TOKENIZER_DIR
    if tokenizer_dir.exists():
        tokenizer = data_lib.load_tokenizer(str(tokenizer_dir))
    corpus = load_pretrain_corpus(config, tokenizer)
    data_seconds = time.perf_counter() - t0
    vocabulary_size = int(corpus.tokenizer.vocabulary_size())
    train_tokens = num_tokens(corpus.train)
    batch, seq = config.batch_size, config.seq_len
    steps_per_epoch = data_lib.lm_steps_per_epoch(train_tokens, seq, batch, mode=config.batching)
    if steps_per_epoch < 1:
        raise ConfigError(
            f"The training text has {train_tokens} tokens, too few for one batch of "
            f"--batch-size {batch} x --seq-len {seq}."
        )
    total_steps = config.max_steps or steps_per_epoch * config.epochs
    epochs = math.ceil(total_steps / steps_per_epoch)
    tokens_per_step = batch * seq
    tokens_per_epoch = data_lib.lm_tokens_per_epoch(train_tokens, seq, batch, mode=config.batching)

    # === Model, built and compiled by pretrain's own helper ===
    dims = preset_config(config.preset, vocabulary_size, dropout=config.dropout)
    scope, description = distribution(config)
    with scope:
        model = build_causal_lm(config, vocabulary_size, steps_per_epoch, total_steps)
    parameters = int(model.count_params())
    fpt = flops_per_token(vocabulary_size, dims["hidden_dim"], dims["num_layers"], dims["intermediate_dim"], seq)
    memory = memory_estimate(parameters, dims, batch, seq, config.precision, config.optimizer, config.grad_accum)

    report = {
        "backend": backend,
        "device": backend_lib.accelerator_name(),
        "distribution": description,
        "preset": config.preset,
        "precision": config.precision,
        "batch_size": batch,
        "seq_len": seq,
        "vocabulary_size": vocabulary_size,
        "parameters": parameters,
        "flops_per_token": fpt,
        "flops_per_step": fpt * tokens_per_step,
        "tokens": {
            "in_data": train_tokens,
            "per_step": tokens_per_step,
            "per_epoch": tokens_per_epoch,
            "steps_per_epoch": steps_per_epoch,
            "epochs": epochs,
            "total_steps": total_steps,
            "total": (total_steps // steps_per_epoch) * tokens_per_epoch
            + (total_steps % steps_per_epoch) * tokens_per_step,
        },
        "memory_mib": memory,
        "measured": None,
        "expected_seconds": None,
    }
    if measure_steps == 0:
        return report

    # === A short run of the real training step ===
    # One static shape to time: the seed's short last step is left out here.
    train_ds = data_lib.lm_dataset(
        corpus.split("train"), seq, batch, mode=config.batching, seed=config.seed, drop_remainder=True
    )
    train_ds = lm_model_inputs(train_ds).repeat()
    log(
        f"klm estimate: timing {warmup_steps} warm-up + {measure_steps} training steps "
        f"({backend}, {config.preset}, {batch}x{seq}, {config.precision})"
    )
    seconds_per_step, startup, steps = time_fit(
        keras, model, train_ds, warmup_steps, measure_steps, config.steps_per_execution
    )
    report["measured"] = {
        "steps": steps,
        "seconds_per_step": seconds_per_step,
        "ms_per_step": 1000 * seconds_per_step,
        "tokens_per_second": tokens_per_step / seconds_per_step,
        "flops_per_second": fpt * tokens_per_step / seconds_per_step,
        "startup_seconds": startup,
        "data_seconds": data_seconds,
        "peak_rss_mib": peak_rss_mib(),
    }

    # Checkpoints: last.keras (and best.keras) after every epoch and at the
    # end, plus the resume backup every `backup_every` steps; one save timed.
    import tempfile

    with tempfile.TemporaryDirectory(prefix="klm-estimate-") as scratch:
        t0 = time.perf_counter()
        runs.save_model(model, Path(scratch) / "probe.keras")
        save_seconds = time.perf_counter() - t0
    saves = 2 * epochs + 2 + total_steps // config.backup_every
    report["measured"]["checkpoint_seconds"] = save_seconds

    # Evaluation: validation after every epoch and once more at the end
    # (the best checkpoint), test once; a forward pass costs about a third of
    # a training step per token.
    eval_tokens = 0
    for split, times in (("valid", epochs + 1), ("test", 1)):
        tokens = corpus.split(split)
        if tokens is not None:
            eval_tokens += times * num_tokens(tokens)
    training = total_steps * seconds_per_step
    evaluation = eval_tokens * seconds_per_step / tokens_per_step / 3
    report["expected_seconds"] = {
        "data": data_seconds,
        "startup": startup,
        "training": training,
        "evaluation": evaluation,
        "checkpoints": saves * save_seconds,
        "total": data_seconds + startup + training + evaluation + saves * save_seconds,
    }
    return report


def format_duration(seconds):
    """`3725` -> `"1h 02m 05s"`, `65` -> `"1m 05s"`, `5` -> `"5s"`."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {seconds:02d}s"
    if minutes:
        return f"{minutes}m {seconds:02d}s"
    return f"{seconds}s"


def format_si(value):
    """`17.36e6` -> `"17.36 M"`: the value with an SI prefix and a trailing space (to prefix a unit)."""
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f} {unit}"
    return f"{value:.0f} "


def format_report(report):
    """The estimate as the lines `klm estimate` prints."""
    if "checkpoint" in report:
        return format_checkpoint_report(report)
    t, mem = report["tokens"], report["memory_mib"]
    lines = [
        f"klm estimate: preset {report['preset']}, backend {report['backend']} ({report['device']}), "
        f"precision {report['precision']}, batch {report['batch_size']} x {report['seq_len']}",
        f"  parameters        {report['parameters']:,} (vocabulary {report['vocabulary_size']:,})",
        f"  FLOPs per token   {format_si(report['flops_per_token'])}FLOP (training: 6N + attention); "
        f"{format_si(report['flops_per_step'])}FLOP per step",
        f"  tokens            {t['in_data']:,} in the training data; {t['per_epoch']:,} trained per epoch "
        f"({t['steps_per_epoch']:,} steps); {t['total']:,} in {t['total_steps']:,} steps ({t['epochs']} epoch(s))",
        f"  memory (estimate) parameters {mem['parameters_mib']:.1f} MiB + gradients {mem['gradients_mib']:.1f} MiB"
        f" + optimizer {mem['optimizer_state_mib']:.1f} MiB"
        + (
            f" + bf16/fp16 weight copies {mem['compute_weight_copies_mib']:.1f} MiB"
            if mem["compute_weight_copies_mib"]
            else ""
        )
        + f" + activations {mem['activations_mib']:.1f} MiB = {mem['total_mib']:.1f} MiB (framework not included)",
    ]
    measured, expected = report["measured"], report["expected_seconds"]
    if measured:
        lines += [
            f"  measured          {measured['steps']} steps of model.fit: {measured['ms_per_step']:.1f} ms/step, "
            f"{measured['tokens_per_second']:,.0f} tokens/s, {format_si(measured['flops_per_second'])}FLOP/s; "
            f"peak memory (RSS) {measured['peak_rss_mib']:,.0f} MiB",
            f"  expected time     {format_duration(expected['total'])} on this machine = training "
            f"{format_duration(expected['training'])} + evaluation ~{format_duration(expected['evaluation'])} + data "
            f"{format_duration(expected['data'])} + compilation {format_duration(expected['startup'])} + checkpoints "
            f"{format_duration(expected['checkpoints'])} (Python/Keras import time not included)",
        ]
    else:
        lines.append("  expected time     not measured (measure_steps=0)")
    return "\n".join(lines)


# The columns of a checkpoint report's memory table (`klm.pretrained.checkpoint_estimate`).
PRECISION_COLUMNS = ("float32", "bfloat16", "mixed_bfloat16")


def format_checkpoint_report(report):
    """`estimate_checkpoint`'s report as the lines `klm estimate --from/--init-from` prints."""
    src, p, dims = report["checkpoint"], report["parameters"], report["dims"]
    kind = src["kind"] + (f", model_type {src['model_type']}" if src.get("model_type") else "")
    loaded = "weights read" if src.get("weights_loaded") else "built from its config, weights not read"
    if report["mode"] == "lora":
        lora = report["lora"]
        mode = f"LoRA rank {lora['rank']} (alpha {lora['alpha']:g}) on {lora['targets']} ({lora['layers']} layers)"
    else:
        mode = {"full": "full fine-tuning", "freeze_backbone": "frozen backbone (head only)"}[report["mode"]]
    head = f"classifier head, {report['num_classes']} classes" if get_task(report["task"]).has_labels else "causal LM"
    heads = f"{dims['num_heads']} heads" + (
        f" ({dims['num_key_value_heads']} key/value)" if dims["num_key_value_heads"] != dims["num_heads"] else ""
    )
    parts = f"backbone {p['backbone']:,} + head {p['head']:,}" + (f" + LoRA {p['lora']:,}" if p["lora"] else "")
    lines = [
        f"klm estimate: {report['command']} {src['name']} ({kind}; {src['backbone']}, {loaded})",
        f"  model             {head}; {mode}; backend {report['backend']} ({report['device']}), "
        f"batch {report['batch_size']} x {report['seq_len']}, optimizer {report['optimizer']}",
        f"  dimensions        vocabulary {dims['vocabulary_size']:,}, hidden {dims['hidden_dim']:,}, "
        f"{dims['num_layers']} layers, {heads}, feed-forward {dims['intermediate_dim']:,}"
        + (" (gated)" if dims["gated"] else ""),
        f"  parameters        {p['total']:,} total ({parts}); trainable {p['trainable']:,} "
        f"({100 * p['trainable'] / max(p['total'], 1):.2f}%)",
        f"  FLOPs per token   {format_si(report['flops_per_token'])}FLOP (training, {report['mode']}); "
        f"{format_si(report['flops_per_step'])}FLOP per step",
        "  memory (estimate, MiB; framework not included)",
        "    " + f"{'':24}" + "".join(f"{c:>16}" for c in PRECISION_COLUMNS),
    ]
    rows = (
        ("weights", "weights_mib"),
        ("gradients", "gradients_mib"),
        (f"optimizer ({report['optimizer']})", "optimizer_state_mib"),
        ("bf16 weight copies", "compute_weight_copies_mib"),
        (f"activations ({report['batch_size']} x {report['seq_len']})", "activations_mib"),
        ("total", "total_mib"),
    )
    for label, key in rows:
        lines.append(
            "    " + f"{label:24}" + "".join(f"{report['memory_mib'][c][key]:>16,.1f}" for c in PRECISION_COLUMNS)
        )
    if report["precision"] in PRECISION_COLUMNS:
        lines.append(f"    (--precision {report['precision']} is the {report['precision']} column)")
    measured = report["measured"]
    if measured:
        lines.append(
            f"  measured          {measured['steps']} steps of model.fit (random weights and tokens, "
            f"{report['precision']}): {measured['ms_per_step']:.1f} ms/step, {measured['tokens_per_second']:,.0f} "
            f"tokens/s, {format_si(measured['flops_per_second'])}FLOP/s; "
            f"compilation {measured['startup_seconds']:.1f} s, model build {measured['build_seconds']:.1f} s; "
            f"peak memory (RSS) {measured['peak_rss_mib']:,.0f} MiB"
        )
        if report["expected_seconds"]:
            lines.append(
                f"  expected time     training {format_duration(report['expected_seconds']['training'])} for "
                f"--max-steps (evaluation, data and checkpoints not included)"
            )
    else:
        lines.append(
            "  step time         not measured (--measure-steps N builds the model with random weights "
            "and times N steps)"
        )
    return "\n".join(lines)
