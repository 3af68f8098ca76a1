"""`SftConfig`: everything `klm finetune --task sft` needs."""

import dataclasses
from typing import Optional

from klm.config import DataOptions, TrainingOptions, _check_choice, _check_positive
from klm.errors import ConfigError
from klm.sft.encoding import TRUNCATE


@dataclasses.dataclass
class SftConfig(TrainingOptions, DataOptions):
    """Supervised fine-tuning for generation (prompt -> response).

    Attributes:
        from_run: where the model starts: `"none"` (a fresh `preset` model
            and a tokenizer trained on the data), a klm language-model run
            folder, or a pretrained checkpoint (keras-hub preset name,
            `hf://ORG/NAME`, a keras-hub or Transformers folder).
        train / valid / test: SFT data (`.jsonl` prompt/response, Alpaca or
            chat records; `.tsv`/`.csv` with prompt and response columns).
        template: a template file (`{system}`, `{prompt}`, `{response}`
            slots); `None`: the checkpoint's chat template when it ships one,
            else klm's default (`klm.sft.DEFAULT_TEMPLATE`).
        train_on_prompt: put the loss on prompt tokens too (default: response
            tokens only).
        packing: several examples per sequence, attention kept within each
            (klm models only).
        truncate: `"prompt"` (cut over-long examples from the prompt's
            start) or `"refuse"`.
        lora_rank / lora_alpha / lora_targets (`TrainingOptions`): LoRA
            adapters (`klm.pretrained.apply_lora`; the backbone is then
            frozen and only the adapters train).
        freeze_backbone: with `lora_rank`: train only the adapters (always
            the case with LoRA); without it there is nothing left to train
            in a causal LM, so it is refused.
        eval_batch_size: batch size for validation and the final report.
        eval_generations: held-out examples generated greedily for the
            end-of-run exact match (0: none).
        max_new_tokens: generation budget of those examples.
    """

    from_run: str = "none"
    train: str = ""
    valid: Optional[str] = None
    test: Optional[str] = None
    tokenizer: Optional[str] = None
    preset: str = "tiny"
    template: Optional[str] = None
    train_on_prompt: bool = False
    packing: bool = False
    truncate: str = "prompt"
    freeze_backbone: bool = False
    eval_batch_size: int = 32
    eval_generations: int = 64
    max_new_tokens: int = 64
    batch_size: int = 16
    seq_len: int = 128
    optimizer: str = "adamw"
    lr: float = 3e-4
    clipnorm: Optional[float] = 1.0
    schedule: str = "constant"
    epochs: int = 3
    log_every: int = 50

    def __post_init__(self):
        TrainingOptions.__post_init__(self)
        DataOptions.__post_init__(self)
        if not self.train:
            raise ConfigError("Expected --train (SFT data: .jsonl, .tsv or .csv). Received: --train=''")
        from klm.models.presets import PRESETS

        _check_choice("preset", self.preset, tuple(PRESETS))
        _check_choice("truncate", self.truncate, TRUNCATE)
        _check_positive("eval_batch_size", self.eval_batch_size)
        _check_positive("eval_generations", self.eval_generations, allow_zero=True)
        _check_positive("max_new_tokens", self.max_new_tokens)
        if self.freeze_backbone and self.lora_rank is None:
            raise ConfigError(
                "Expected --lora-rank with --freeze-backbone for --task sft: a causal LM is all backbone (the "
                "output projection is the tied embedding), so freezing it leaves nothing to train. Add "
                "--lora-rank R to train adapters only. Received: --freeze-backbone=True"
            )
