"""`evaluate_run`: perplexity of a language model, accuracy/F1 of a classifier."""

import sys

from klm import backend as backend_lib
from klm import runs
from klm.data.lm.model_inputs import lm_model_inputs
from klm.data.lm.model_inputs import num_tokens as count_tokens
from klm.generate import position_limit, run_template, sft_settings
from klm.metrics import (
    classification_metrics,  # noqa: F401 - its old import path
    perplexity,
    unknown_token_report,
)
from klm.pretrained import evaluate_checkpoint, load_checkpoint
from klm.pretrained.checkpoint import classify, load_run
from klm.sft import batching
from klm.sft.conversations import read_conversations
from klm.sft.encoding import encode_conversations
from klm.sft.evaluation import generation_metrics, response_loss
from klm.sft.evaluation import perplexity as response_perplexity  # NaN for an empty response set
from klm.tasks import get_task


def evaluate_run(
    run_dir,
    data,
    backend=None,
    batch_size=None,
    text_field="text",
    label_field="label",
    seq_len=None,
    dtype=None,
    add_start_token=None,
    max_new_tokens=None,
    samples=3,
):
    """Evaluates a finished run, or a pretrained checkpoint, on a data file.

    Language model (klm run): mean next-token loss, perplexity and token
    count over the file (contiguous windows of the run's `seq_len`, like
    validation). Classifier: accuracy, macro-F1 and a confusion matrix.

    Pretrained checkpoint (`run_dir` a keras-hub preset name, `kaggle://`,
    `hf://ORG/NAME`, a keras-hub or Transformers folder, or a run whose model
    is a keras-hub `CausalLM`): perplexity with the convention of
    Transformers' causal-LM loss (windows of `seq_len`, default the model's
    context up to 1024 tokens; see `klm.pretrained.perplexity`), with the
    checkpoint's own tokenizer.

    SFT run (`klm finetune --task sft`; `data` in its formats): the
    response-only loss and perplexity (prompt tokens carry no loss), and the
    greedy generation of every example's last response with the run's
    template, against the reference: exact match and token F1 (see
    `evaluate_sft`).

    Args:
        seq_len, dtype, add_start_token: pretrained checkpoints only (see
            `klm.pretrained.evaluate_checkpoint`, `load_checkpoint`).
        max_new_tokens, samples: SFT runs: the generation budget (default:
            the run's `max_new_tokens`) and how many generations to show.

    Returns:
        A dict of results (the `--json` output of `klm evaluate`).
    """

    backend = backend_lib.use_backend(backend)
    from klm import data as data_lib

    if classify(run_dir) == "klm_run" and _templated(runs.read_run_config(run_dir)):
        return evaluate_sft(
            run_dir,
            data,
            backend=backend,
            batch_size=batch_size,
            max_new_tokens=max_new_tokens,
            samples=samples,
            dtype=dtype,
        )
    if classify(run_dir) != "klm_run" or runs.read_run_config(run_dir).get("pretrained"):
        return _evaluate_pretrained(
            run_dir, data, backend, batch_size, text_field, label_field, seq_len, dtype, add_start_token
        )
    run = load_run(run_dir)
    result = {"run_dir": str(run.path), "data": str(data), "task": run.task, "backend": backend}
    if run.mode.generates and not _is_klm_causal_lm(run.model):
        return _evaluate_pretrained(
            run_dir, data, backend, batch_size, text_field, label_field, seq_len, dtype, add_start_token
        )
    if run.mode.generates:
        seq_len = run.seq_len
        batch = batch_size or int(run.config.get("eval_batch_size", 10))
        from klm.losses import lm_loss

        corpus = data_lib.load_corpus(
            data,
            tokenizer=run.tokenizer,
            text_field=text_field,
            eos_between_documents=run.config.get("eos_between_documents"),
            verbose=False,
            role="evaluation",
        )
        tokens, num_tokens = corpus.train, count_tokens(corpus.train)
        steps = data_lib.lm_steps_per_epoch(num_tokens, seq_len, batch, mode="contiguous")
        if steps < 1:  # a short file: fall back to one column
            batch = 1
            steps = data_lib.lm_steps_per_epoch(num_tokens, seq_len, batch, mode="contiguous")
        dataset = lm_model_inputs(data_lib.lm_dataset(tokens, seq_len, batch, mode="contiguous"))
        model = run.model
        model.compile(loss=lm_loss(), weighted_metrics=[])
        loss = float(model.evaluate(dataset, verbose=0, return_dict=True)["loss"])
        result.update(
            tokens=int(num_tokens),
            evaluated_tokens=int(data_lib.lm_tokens_per_epoch(num_tokens, seq_len, batch, mode="contiguous")),
            loss=loss,
            perplexity=perplexity(loss),
        )
        result.update(unknown_token_report(tokens, getattr(run.tokenizer, "unk_token_id", None), f"{data}"))
        return _warn(result)
    result.update(_classifier_metrics(run, data, batch_size, text_field, label_field))
    return result


def evaluate_sft(run_dir, data, backend=None, batch_size=None, max_new_tokens=None, samples=3, dtype=None):
    """Response loss/perplexity, greedy exact match and token F1 of an SFT run on held-out SFT data.

    Returns:
        dict with `response_loss`, `response_perplexity`, `response_tokens`,
        `exact_match`, `token_f1` (fractions in [0, 1]), `examples`,
        `samples` (a few prompts, references and generations), `template`
        and the data report (`truncated_examples`, ...).
    """

    conversations = read_conversations(data)
    run = load_checkpoint(run_dir, dtype=dtype)
    settings = sft_settings(run)
    template = run_template(run)
    config = run.config
    seq_len = int(config.get("seq_len", 128))
    end_id, start_id = settings.get("end_token_id"), settings.get("start_token_id")
    pad_id = int(settings.get("pad_token_id") or 0)
    examples, report = encode_conversations(
        conversations, template, run.tokenizer, seq_len, truncate="prompt", end_token_id=end_id, start_token_id=start_id
    )
    batches = batching.padded_batches(examples, batch_size or int(config.get("eval_batch_size", 32)), pad_id, seq_len)
    loss, tokens = response_loss(run.model, batches)
    budget = max_new_tokens or int(config.get("max_new_tokens", 64))
    metrics = generation_metrics(
        run.model,
        run.tokenizer,
        template,
        conversations,
        budget,
        end_id,
        start_id,
        limit=position_limit(run.model),
        samples=samples,
    )
    return {
        "run_dir": str(run_dir),
        "data": str(data),
        "task": "causal_lm",
        "finetune_task": "sft",
        "backend": backend,
        "template": template.source,
        "examples": len(conversations),
        "response_tokens": tokens,
        "response_loss": loss,
        "response_perplexity": response_perplexity(loss),
        "exact_match": metrics["exact_match"],
        "token_f1": metrics["token_f1"],
        "max_new_tokens": budget,
        "truncated_examples": report["truncated_examples"],
        "samples": metrics["samples"],
    }


def _classifier_metrics(run, data, batch_size, text_field, label_field):
    from klm import data as data_lib

    examples = data_lib.read_labelled_texts(data, text_field=text_field, label_field=label_field)
    vocabulary = data_lib.LabelVocabulary(run.labels, multi_label=run.multi_label)
    labels = vocabulary.encode(examples.labels, path=str(data), line_numbers=examples.line_numbers)
    dataset = data_lib.classification_dataset(
        examples.texts, labels, run.tokenizer, run.seq_len, batch_size or 64, shuffle=False
    )
    return classification_metrics(run.model, dataset, run.labels, run.multi_label)


def _is_klm_causal_lm(model):
    from klm.models import KlmCausalLM

    return isinstance(model, KlmCausalLM)


def _evaluate_pretrained(spec, data, backend, batch_size, text_field, label_field, seq_len, dtype, add_start_token):

    checkpoint = load_checkpoint(spec, dtype=dtype)
    result = {
        "run_dir": str(spec),
        "data": str(data),
        "task": checkpoint.task,
        "backend": backend,
        "checkpoint": checkpoint.source,
    }
    if not checkpoint.mode.generates:  # a classifier run on a pretrained backbone
        result.update(_classifier_metrics(checkpoint.run, data, batch_size, text_field, label_field))
        return result
    if seq_len is None and checkpoint.run is not None:
        seq_len = checkpoint.config.get("seq_len")
    result.update(
        evaluate_checkpoint(
            checkpoint,
            data,
            seq_len=seq_len,
            batch_size=batch_size,
            text_field=text_field,
            add_start_token=add_start_token,
        )
    )
    return _warn(result)


def _templated(config):
    """Whether a run trains on templated prompts (SFT): it is scored on its responses, by `evaluate_sft`."""
    return runs.run_task(config).prompt_settings(config) is not None


def _warn(result):
    """Prints the result's `warnings` on stderr (they stay in the `--json` output too)."""
    for warning in result.get("warnings", ()):
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    return result


def format_result(result):
    """Human-readable text for `klm evaluate`."""
    lines = [f"run:  {result['run_dir']}", f"data: {result['data']}"]
    if "checkpoint" in result:
        source = result["checkpoint"]
        lines.append(f"model: {source.get('architecture')} ({source.get('kind')}, {source.get('dtype')})")
    if "response_loss" in result:  # an SFT run's report (evaluate_sft)
        lines += [
            f"template:            {result['template']}",
            f"examples:            {result['examples']:,} ({result['response_tokens']:,} response tokens, "
            f"{result['truncated_examples']} truncated)",
            f"response loss:       {result['response_loss']:.4f}",
            f"response perplexity: {result['response_perplexity']:.2f}",
            f"exact match:         {result['exact_match']:.4f} (greedy, up to {result['max_new_tokens']} new tokens)",
            f"token F1:            {result['token_f1']:.4f}",
        ]
        for sample in result["samples"]:
            lines += [
                f"--- prompt:    {sample['prompt']!r}",
                f"    reference: {sample['reference']!r}",
                f"    generated: {sample['generated']!r}",
            ]
        return "\n".join(lines)
    if get_task(result["task"]).generates:
        if "convention" in result:
            lines.append(f"window: {result['seq_len']} tokens, {result['convention']}")
        lines += [
            f"tokens:     {result['tokens']:,} ({result['evaluated_tokens']:,} evaluated)",
            f"loss:       {result['loss']:.4f}",
            f"perplexity: {result['perplexity']:.2f}",
        ]
        if "unknown_token_share" in result:
            lines.append(f"<unk>:      {result['unknown_token_share']:.2%} of the tokens")
        return "\n".join(lines)
    lines += [
        f"examples:  {result['examples']:,}",
        f"accuracy:  {result['accuracy']:.4f}",
        f"macro-F1:  {result['macro_f1']:.4f}",
    ]
    if "confusion_matrix" in result:
        labels = result["labels"]
        width = max(8, *(len(str(label)) + 1 for label in labels))
        lines.append("confusion matrix (rows: true, columns: predicted):")
        lines.append(" " * width + "".join(f"{str(label):>{width}}" for label in labels))
        for label, row in zip(labels, result["confusion_matrix"]):
            lines.append(f"{str(label):>{width}}" + "".join(f"{v:>{width}}" for v in row))
    return "\n".join(lines)
