"""`klm serve`: a language model behind the OpenAI-compatible HTTP API, with dynamic batching and a chat page.

- `config.ServeConfig`: the options.
- `engine.ServedModel`: the loaded model, prompts built as `klm generate` builds them, limits.
- `scheduler.BatchScheduler`: the model thread; concurrent requests decoded in one batch.
- `schema`: pydantic request bodies and OpenAI-style errors.
- `app.create_app`: the FastAPI app (endpoints, streaming, the page in `page.html`).
- `server.serve`: load, start, run under uvicorn, drain on SIGTERM/Ctrl-C.

Importing this package imports neither Keras nor FastAPI.
"""

from klm.errors import ConfigError
from klm.serve.config import ServeConfig


def serve(config, log=None):
    """See `klm.serve.server.serve`."""
    # Here, not at the top: the server imports FastAPI and pydantic (the optional `serve` extra),
    # and `klm serve --help` and `ServeConfig` must work without them.
    try:
        from klm.serve.server import serve as run
    except ImportError as e:
        raise ConfigError(
            f"klm serve needs FastAPI, uvicorn and pydantic: pip install 'klm[serve]'. Received: ImportError: {e}"
        ) from None

    return run(config, log=log)


__all__ = ["ServeConfig", "serve"]
