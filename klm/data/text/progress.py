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

    def __init__(
        self,
        label,
        unit="lines",
        enabled=True,
        interval=2.0,
        stream=None,
        total=None,
        total_unit="MB",
        total_scale=2**20,
    ):
        self.label = label
        self.unit = unit
        self.enabled = enabled
        self.interval = interval
        self.stream = stream
        self.count = 0
        # Optional second measure with a known total (e.g. bytes of a file):
        # `update(count, done=n)` advances it; lines then show %, rate and ETA.
        self.total = total
        self.total_unit = total_unit
        self.total_scale = total_scale
        self.done = 0
        self.start = time.perf_counter()
        self._last = self.start

    def _print(self, now, final=False):
        elapsed = max(now - self.start, 1e-9)
        rate = self.count / elapsed
        suffix = f" in {elapsed:.1f}s" if final else ""
        line = f"[klm] {self.label}: {self.count:,} {self.unit}{suffix} ({rate:,.0f} {self.unit}/s)"
        if self.total:
            done = self.done / self.total_scale
            speed = done / elapsed
            line += f", {done:,.1f} {self.total_unit} ({speed:,.1f} {self.total_unit}/s)"
            if not final:
                fraction = min(self.done / self.total, 1.0)
                eta = (self.total - self.done) / self.total_scale / speed if speed > 0 else float("inf")
                line += f" {100 * fraction:.0f}% ETA {_duration(eta)}"
        print(line, file=self.stream or sys.stderr, flush=True)

    def update(self, count=1, done=0):
        """Adds `count` (and `done` towards `total`) and prints a line if `interval` seconds have passed."""
        self.count += count
        self.done += done
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


def _duration(seconds):
    if seconds == float("inf"):
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
