"""`klm serve`: load a model, start the batching scheduler, run the app under uvicorn until SIGTERM/Ctrl-C."""

import contextlib
import signal
import sys
import threading

from klm.errors import ConfigError
from klm.serve.engine import ServedModel
from klm.serve.scheduler import BatchScheduler, Sequence


def serve(config, log=None):
    """Serves `config.run_dir` until SIGTERM or Ctrl-C, then answers the requests in flight and returns.

    Args:
        config: a `klm.serve.config.ServeConfig`.
        log: callable for progress lines (default: print to stderr).

    Examples:
    ```python
    serve(ServeConfig(run_dir="runs/sft", port=8080))
    ```
    """
    try:
        import uvicorn

        from klm.serve.app import create_app
    except ImportError as e:
        raise ConfigError(
            f"klm serve needs FastAPI and uvicorn: pip install 'klm[serve]'. Received: ImportError: {e}"
        ) from None

    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    log(f"klm serve: loading {config.run_dir}")
    served = ServedModel.load(
        config.run_dir,
        name=config.model_name,
        dtype=config.precision,
        context_length=config.context_length,
        default_max_tokens=config.default_max_tokens,
    )
    scheduler = BatchScheduler(served, max_batch_size=config.max_batch_size)
    # One short decode before the first request, so that it does not pay for
    # the first calls' set-up (kernel selection, tracing).
    warm_up = Sequence(served.completion_prompt_ids("hello"), 2, emit=lambda event: None, temperature=0)
    scheduler.run_once([warm_up])
    app = create_app(served, scheduler, api_key=config.api_key)
    server = _server(
        uvicorn.Config(app, host=config.host, port=config.port, log_level="warning", lifespan="on"),
        on_ready=lambda url: log(
            f"klm serve: {served.name} at {url} (OpenAI API under {url}/v1, chat page at {url}/; "
            f"batches of up to {config.max_batch_size}, context {served.context_length} tokens)"
        ),
    )
    server.run()
    log("klm serve: stopped")


def _server(config, on_ready):
    """A uvicorn `Server` that reports the address it bound and exits 0 on SIGTERM/SIGINT.

    uvicorn drains on a signal (it stops listening, lets each connection's
    response finish, then runs the app's shutdown, which stops the
    scheduler), but then re-raises the signal so that the process ends by
    it. A server stopped on purpose ends with status 0 here instead.

    Args:
        config: a `uvicorn.Config`.
        on_ready: callable `(url)`, called once the socket listens.
    """
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets=None):
            await super().startup(sockets=sockets)
            if self.started and self.servers:
                host, port = self.servers[0].sockets[0].getsockname()[:2]
                on_ready(f"http://{host if ':' not in host else f'[{host}]'}:{port}")

        @contextlib.contextmanager
        def capture_signals(self):
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            signals = (signal.SIGINT, signal.SIGTERM)
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in signals}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return Server(config)
