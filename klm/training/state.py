"""Resume state: where a run stands, saved with its weights so a killed run resumes exactly.

A run resumes exactly when it restores, besides the weights and the
optimizer (which `model.save_weights` writes), three things Keras does not
keep: the position in the data (batches consumed so far), the random
number generators of the dropout layers (Keras `SeedGenerator` states are
variables, but weight files skip them), and the bookkeeping of the run
itself (best validation score, early-stopping patience, the log window).
`TrainingState` is that record; `capture_rng`/`restore_rng` move the
generator states in and out of the model.
"""

import dataclasses
import json

from klm import backend

STATE_VERSION = 1


@dataclasses.dataclass
class TrainingState:
    """Where a training run stands after `batches_done` training batches.

    Attributes:
        batches_done: training batches consumed since the run began, over
            all epochs (with `--grad-accum N`, N batches make one step).
        step: optimizer steps taken (`model.optimizer.iterations`).
        best_value: best validation loss so far (`None`: none yet).
        best_step: the step `best.keras` was saved at.
        evals_without_improvement: validations since the last improvement
            (early stopping's patience counter).
        stopped_early: early stopping ended the run.
        logger: the `StepLogger`'s open log window and counters (its `state()`).
        rng: dropout generator states, by variable path.
        eval_seconds: time spent in validation so far (for the summary).
    """

    batches_done: int = 0
    step: int = 0
    best_value: float | None = None
    best_step: int | None = None
    evals_without_improvement: int = 0
    stopped_early: bool = False
    logger: dict = dataclasses.field(default_factory=dict)
    rng: dict = dataclasses.field(default_factory=dict)
    eval_seconds: float = 0.0

    def to_json(self):
        return json.dumps(dict(dataclasses.asdict(self), version=STATE_VERSION), sort_keys=True)

    @classmethod
    def from_dict(cls, data):
        """Builds a state from `to_json()`'s dict; raises `ValueError` if it is not one."""
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            raise ValueError(f"not a klm resume state (version {STATE_VERSION})")
        fields = {f.name for f in dataclasses.fields(cls)}
        state = cls(**{k: v for k, v in data.items() if k in fields})
        if not isinstance(state.batches_done, int) or state.batches_done < 0:
            raise ValueError(f"bad batches_done={state.batches_done!r}")
        return state


def _seed_generator_variables(model):
    """The dropout layers' generator-state variables, by path (stable across processes)."""
    return {v.path: v for v in model.non_trainable_variables if v.path.endswith("seed_generator_state")}


# Key of the backend's global generator state in `TrainingState.rng`.
BACKEND_RNG = "__backend__"


def capture_rng(model):
    """The model's `SeedGenerator` states (and the backend's global generator) as JSON-ready values."""
    import keras

    rng = {
        path: keras.ops.convert_to_numpy(variable).tolist()
        for path, variable in _seed_generator_variables(model).items()
    }
    rng[BACKEND_RNG] = backend.global_rng_state()
    return rng


def restore_rng(model, rng):
    """Assigns saved generator states back (the dropout masks continue as before)."""
    import numpy as np

    backend.set_global_rng_state(rng.get(BACKEND_RNG))
    variables = _seed_generator_variables(model)
    for path, value in rng.items():
        if path in variables:
            variable = variables[path]
            variable.assign(np.asarray(value, dtype=variable.dtype))
