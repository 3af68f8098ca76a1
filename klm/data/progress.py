"""`ProgressReporter`: rate-limited progress lines on stderr for long work."""

import sys
import time


class ProgressReporter:
    """Prints `label: N unit (R unit/s)` to stderr every `interval` seconds.

    Silent for work that ends before the first interval, except for the
    summary line `close()` prints when `summary=True`.

    Args:
        label: what is being done, e.g. `"cleaning train"`.
        unit: the counted unit, e.g. `"lines"` or `"tokens"`.
        enabled: bool. If `False`, prints nothing.
        interval: seconds between progress lines.
        stream: where to print. Defaults to `sys.stderr`.

    Example:

    ```python
    progress = ProgressReporter("tokenizing train", "lines")
    for batch in batches:
        progress.update(len(batch))
    progress.close()
    ```
    """

    def __init__(self, label, unit="lines", enabled=True, interval=2.0, stream=None):
        self.label = label
        self.unit = unit
        self.enabled = enabled
        self.interval = interval
        self.stream = stream
        self.count = 0
        self.start = time.perf_counter()
        self._last = self.start

    def _print(self, now, final=False):
        elapsed = max(now - self.start, 1e-9)
        rate = self.count / elapsed
        suffix = f" in {elapsed:.1f}s" if final else ""
        print(
            f"[klm] {self.label}: {self.count:,} {self.unit}{suffix} ({rate:,.0f} {self.unit}/s)",
            file=self.stream or sys.stderr,
            flush=True,
        )

    def update(self, count=1):
        """Adds `count` and prints a line if `interval` seconds have passed."""
        self.count += count
        if self.enabled:
            now = time.perf_counter()
            if now - self._last >= self.interval:
                self._last = now
                self._print(now)

    def close(self, summary=True):
        """Prints the final count, time and rate; returns the elapsed seconds."""
        now = time.perf_counter()
        if self.enabled and summary:
            self._print(now, final=True)
        return now - self.start
