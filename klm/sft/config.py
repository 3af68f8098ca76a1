"""`SftConfig`: everything `klm finetune --task sft` needs."""

import dataclasses

from klm.config import FineTuningOptions, option
from klm.errors import ConfigError
from klm.sft.encoding import TRUNCATE


@dataclasses.dataclass
class SftConfig(FineTuningOptions):
    """Supervised fine-tuning for generation (prompt -> response).

    Each field is a `klm finetune --task sft` flag; its help is in its
    `option(...)` (here, or in `klm.config.FineTuningOptions`,
    `TrainingOptions`, `DataOptions`). Notes:

    - `from_run`: `"none"` (a fresh `preset` model and a tokenizer trained
      on the data), a klm language-model run folder, or a pretrained
      checkpoint (keras-hub preset name, `hf://ORG/NAME`, a keras-hub or
      Transformers folder).
    - `template=None`: the checkpoint's chat template when it ships one, else
      klm's default (`klm.sft.DEFAULT_TEMPLATE`).
    - `lora_rank` / `lora_alpha` / `lora_targets`: LoRA adapters
      (`klm.pretrained.apply_lora`; the backbone is then frozen and only the
      adapters train).
    - `freeze_backbone`: with `lora_rank`: train only the adapters (always
      the case with LoRA); without it there is nothing left to train in a
      causal LM, so it is refused.
    - `eval_batch_size` (no flag): batch size for validation and the final
      report.
    """

    train: str = option("", required="SFT data: .jsonl, .tsv or .csv")
    template: str | None = option(
        None,
        "Prompt template file with {system}, {prompt}, {response} slots.",
        default_help="the checkpoint's chat template if it ships one, else klm's "
        "('user: {prompt}' / 'assistant: {response}')",
    )
    train_on_prompt: bool = option(False, "Put the loss on prompt tokens too (default: responses only).")
    packing: bool = option(False, "Pack several examples per sequence (attention kept within each; klm models only).")
    truncate: str = option(
        "prompt",
        "Examples over --seq-len lose tokens from the prompt's start (prompt) or are refused (refuse).",
        choices=TRUNCATE,
    )
    eval_batch_size: int = option(32, check="positive", cli=False)
    eval_generations: int = option(
        64, "Held-out examples generated greedily for the final exact match / token F1 (0: none).", check="non_negative"
    )
    max_new_tokens: int = option(64, "Generation budget of those examples.", check="positive")
    batch_size: int = 16
    seq_len: int = 128

    def __post_init__(self):
        super().__post_init__()
        if self.freeze_backbone and self.lora_rank is None:
            raise ConfigError(
                "Expected --lora-rank with --freeze-backbone for --task sft: a causal LM is all backbone (the "
                "output projection is the tied embedding), so freezing it leaves nothing to train. Add "
                "--lora-rank R to train adapters only. Received: --freeze-backbone=True"
            )
