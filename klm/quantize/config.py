"""`QuantizeConfig`: the options of `klm quantize`, checked before anything is loaded."""

import dataclasses
import os

from klm.config import check_fields, option
from klm.errors import ConfigError, RunDirError

MODES = ("int8", "int4", "float8", "gptq", "awq")
CALIBRATED_MODES = ("gptq", "awq")


@dataclasses.dataclass
class QuantizeConfig:
    """Options of `klm quantize RUN OUT`.

    Args:
        source: the model to quantize: a klm run folder or any checkpoint name
            (`klm.pretrained.resolve`).
        out_dir: the run folder to write; it must not exist.
        mode: Keras's quantization mode (`model.quantize(mode)`).
        calibration: text the calibrated modes (`gptq`, `awq`) read.
        eval_data: text for perplexity before and after (optional).
        weight_bits: bits per weight of `gptq` (2, 3, 4 or 8; `awq` is 4-bit).
        group_size: columns sharing a scale (`int4`, `gptq`, `awq`); -1: one per output channel.
        calibration_samples, calibration_seq_len: windows of calibration text.
        speed_tokens: tokens generated (greedy) to measure tokens/s before and after; 0 skips it.
        seq_len: perplexity window (checkpoints; klm runs use their own).
        backend: Keras backend.

    Example:

    ```python
    from klm.quantize import QuantizeConfig, quantize_run
    summary = quantize_run(QuantizeConfig(source="runs/lm", out_dir="runs/lm-int8", mode="int8", eval_data="test.txt"))
    ```
    """

    source: str
    out_dir: str
    mode: str = option("int8", "Quantization mode (Keras's model.quantize).", choices=MODES)
    calibration: str | None = option(
        None, "Calibration text for gptq/awq (a text file, glob or folder, as --data).", flag="--calibration"
    )
    eval_data: str | None = option(None, "Held-out text: perplexity before and after.", flag="--eval-data")
    weight_bits: int = option(4, "gptq: bits per weight (2, 3, 4 or 8); awq is always 4-bit.", choices=(2, 3, 4, 8))
    group_size: int = option(128, "int4/gptq/awq: input columns sharing one scale; -1: one scale per output unit.")
    calibration_samples: int = option(32, "gptq/awq: calibration windows.", check="positive")
    calibration_seq_len: int = option(128, "gptq/awq: tokens per calibration window.", check="positive")
    speed_tokens: int = option(
        32, "Tokens generated (greedy) to measure tokens/s before and after; 0 skips it.", check="non_negative"
    )
    seq_len: int | None = option(None, "Checkpoints: perplexity window in tokens (default: the model's context).")
    backend: str | None = None

    def __post_init__(self):
        check_fields(self)
        if self.mode in CALIBRATED_MODES and not self.calibration:
            raise ConfigError(
                f"--mode {self.mode} calibrates on text: pass --calibration FILE. Received: --calibration=None"
            )
        if self.calibration and self.mode not in CALIBRATED_MODES:
            raise ConfigError(
                f"--calibration is used by --mode gptq or awq only. Received: --mode={self.mode} "
                f"--calibration={self.calibration!r}"
            )
        if self.group_size == 0 or self.group_size < -1:
            raise ConfigError(f"Expected --group-size > 0 or -1. Received: --group-size={self.group_size}")
        if self.seq_len is not None and self.seq_len < 2:
            raise ConfigError(f"Expected --seq-len >= 2. Received: --seq-len={self.seq_len}")
        for flag, path in (("--calibration", self.calibration), ("--eval-data", self.eval_data)):
            if path and not any(ch in path for ch in "*?[") and not os.path.exists(path):
                raise ConfigError(f"{flag} does not exist. Received: {flag}={path!r}")
        if os.path.lexists(self.out_dir):
            raise RunDirError(
                f"OUT already exists; klm quantize writes a new run folder and never replaces one. Choose another "
                f"name or remove it yourself. Received: OUT={self.out_dir!r}"
            )
        if os.path.abspath(self.out_dir) == os.path.abspath(self.source):
            raise RunDirError(f"OUT must differ from RUN. Received: OUT={self.out_dir!r}")
