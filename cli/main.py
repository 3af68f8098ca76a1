"""Entry point of the `klm` command: the group and lazy command loading."""

import importlib
import importlib.util

import click

from klm import __version__

# name -> "module:attribute" of a click command. Modules are imported only when
# the command runs or its help is shown, so `klm --help` imports no Keras.
COMMANDS = {
    "prepare": ("klm.cli.prepare_cmd", "prepare", "Clean text, train a tokenizer, write token shards."),
    "pretrain": ("klm.cli.train_cmd", "pretrain", "Pretrain a causal language model (the main job)."),
    "finetune": ("klm.cli.train_cmd", "finetune", "Fine-tune a classifier on labelled text."),
    "evaluate": ("klm.cli.eval_cmd", "evaluate", "Perplexity or accuracy of a run on a data file."),
    "generate": ("klm.cli.eval_cmd", "generate", "Generate text from a language-model run."),
    "export": ("klm.cli.export_cmd", "export", "Export a run as a TF SavedModel for serving."),
    "serve": ("klm.cli.serve_cmd", "serve", "Serve a language model behind the OpenAI-compatible API."),
    "quantize": (
        "klm.cli.quantize_cmd",
        "quantize",
        "Quantize a language model (int8, int4, float8, GPTQ, AWQ); sizes, perplexity, speed before/after.",
    ),
    "estimate": (
        "klm.cli.estimate_cmd",
        "estimate",
        "Parameters, FLOPs, memory and expected time of a pretraining run.",
    ),
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx):
        return [name for name in COMMANDS if self._available(name)]

    def _available(self, name):
        module, _, _ = COMMANDS[name]
        return importlib.util.find_spec(module) is not None

    def get_command(self, ctx, name):
        if name not in COMMANDS or not self._available(name):
            return None
        module, attribute, _ = COMMANDS[name]
        return getattr(importlib.import_module(module), attribute)

    def format_commands(self, ctx, formatter):
        # Short help from the table above, so listing commands imports nothing.
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="klm")
def main():
    """klm: train language models on your own text with Keras 3.

    Pretrain a causal Transformer from scratch, fine-tune it with a classifier
    head, evaluate, generate, and export TF SavedModels for serving, on the
    TensorFlow, JAX or PyTorch backend (`--backend`).
    """
    from klm import backend

    # CPU-only machines: drop TensorFlow's "failed call to cuInit" error lines
    # (KLM_KEEP_FRAMEWORK_LOGS=1 keeps them).
    backend.filter_gpu_probe_noise()


if __name__ == "__main__":
    main()
