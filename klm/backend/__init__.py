"""Backend selection and every piece of backend-specific code in klm.

Keras 3 reads its backend once, when `keras` is first imported. klm therefore
decides the backend here, before anything imports Keras:

1. an explicit choice (`klm pretrain --backend jax`, `use_backend("jax")`),
2. the `KERAS_BACKEND` environment variable,
3. Keras's own config file (`$KERAS_HOME/keras.json`, `~/.keras/keras.json`),
4. `tensorflow`.

Model code never asks which backend it runs on; the few places that must
(distribution, seeding, device discovery, a handful of measured fast paths)
call the helpers of this package, which is the only place in klm that
branches on the backend:

    selection.py     which backend (above); `BackendError`
    runtime.py       framework log noise, global RNG state and seeding, jit support, peak memory
    distribution.py  devices, processes, meshes and distribution scopes
    kernels.py       dense, fused sparse cross-entropy, fused global-norm clipping, the attention path
    decoding.py      the per-backend half of KV-cache decoding (`klm.decoding`), compiled model functions
    precision.py     the device description and `--precision auto`

Every name is importable from `klm.backend` itself (`from klm.backend import
use_backend`). Nothing here imports Keras at import time.
"""

from klm.backend.decoding import (
    cache_index,
    cached_attention,
    compile_model_function,
    decoding_scope,
    stack_layer_caches,
)
from klm.backend.distribution import (
    accelerator_name,
    barrier,
    clips_per_replica,
    configure_cpu_devices,
    distribution_scope,
    initialize_cluster,
    local_devices,
    parse_mesh,
    process_count,
    process_index,
)
from klm.backend.kernels import (
    ATTENTION_PATHS,
    attention_path,
    choose_attention_path,
    dense,
    dropout_attention,
    explicit_causal_mask,
    fuse_global_clipnorm,
    scaled_gather,
    sparse_softmax_cross_entropy,
)
from klm.backend.precision import (
    BF16_CPU_FLAGS,
    BF16_FASTER_ON_CPU,
    describe_device,
    resolve_precision,
)
from klm.backend.runtime import (
    check_steps_per_execution,
    filter_gpu_probe_noise,
    global_rng_state,
    peak_memory,
    reuse_freed_memory,
    set_global_rng_state,
    set_seed,
    supports_jit,
)
from klm.backend.selection import (
    BACKENDS,
    BackendError,
    current,
    normalize,
    resolve,
    use_backend,
)

__all__ = [
    "BACKENDS",
    "BackendError",
    "normalize",
    "resolve",
    "use_backend",
    "current",
    "filter_gpu_probe_noise",
    "global_rng_state",
    "set_global_rng_state",
    "set_seed",
    "check_steps_per_execution",
    "supports_jit",
    "reuse_freed_memory",
    "local_devices",
    "accelerator_name",
    "configure_cpu_devices",
    "initialize_cluster",
    "process_count",
    "process_index",
    "parse_mesh",
    "clips_per_replica",
    "distribution_scope",
    "barrier",
    "dense",
    "sparse_softmax_cross_entropy",
    "fuse_global_clipnorm",
    "scaled_gather",
    "ATTENTION_PATHS",
    "choose_attention_path",
    "attention_path",
    "explicit_causal_mask",
    "dropout_attention",
    "peak_memory",
    "decoding_scope",
    "cache_index",
    "compile_model_function",
    "cached_attention",
    "stack_layer_caches",
    "BF16_CPU_FLAGS",
    "BF16_FASTER_ON_CPU",
    "describe_device",
    "resolve_precision",
]
