"""Options of `klm serve`."""

import dataclasses

from klm.config import check_fields, option
from klm.errors import ConfigError


@dataclasses.dataclass
class ServeConfig:
    """Options of `klm serve` (each field with a help text is a command-line flag).

    Examples:
    ```python
    config = ServeConfig(run_dir="runs/my-lm", port=8080, api_key="secret")
    klm.serve.serve(config)
    ```
    """

    run_dir: str
    host: str = option("127.0.0.1", "Address to listen on (0.0.0.0 for every interface).")
    port: int = option(8000, "TCP port to listen on (0: any free port, printed at start).", check="[0, 65535]")
    api_key: str | None = option(
        None, "Require `Authorization: Bearer KEY` on the /v1 endpoints (401 otherwise).", default_help="none"
    )
    model_name: str | None = option(
        None, "Model id reported by /v1/models and expected in requests.", default_help="RUN's folder or preset name"
    )
    max_batch_size: int = option(
        16, "Requests decoded together at most (1: one at a time, no batching).", check="positive"
    )
    default_max_tokens: int = option(
        256, "Tokens generated per response when a request gives no max_tokens.", check="positive"
    )
    context_length: int | None = option(
        None,
        "Prompt + generated tokens per request at most.",
        check="positive",
        default_help="the model's position limit, else 2048",
    )
    precision: str | None = None
    backend: str | None = None

    def __post_init__(self):
        check_fields(self)
        if self.api_key is not None and not self.api_key.strip():
            raise ConfigError(f"Expected a non-empty API key. Received: --api-key={self.api_key!r}")
