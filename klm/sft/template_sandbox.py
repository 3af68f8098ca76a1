"""`limited_sandbox()`: jinja2's immutable sandbox with bounds on the work one render may do.

jinja2's `ImmutableSandboxedEnvironment` keeps a template away from Python's
internals but not from spinning: two nested `range(100000)` loops run 10^10
iterations. A chat template is code shipped with a checkpoint, so klm
bounds every render:

- every `{% for %}` loop's iterable is wrapped (at parse time) so that each
  iteration is counted: at most `MAX_ITERATIONS` per render;
- `range()` gives at most `MAX_RANGE` items (jinja2's own cap);
- `*` and `**` (intercepted operators) refuse results past `MAX_ITEMS`
  items or an exponent past `MAX_EXPONENT` (`"a" * 10**9` would allocate
  before any loop ran);
- the output is at most `MAX_OUTPUT_CHARS` plus 8 times the conversation's
  own text;
- a wall-clock deadline (`RENDER_SECONDS`) is checked at loop iterations,
  calls, attribute lookups and output chunks.

The checks run in the rendering thread itself, so a refused render leaves
nothing running. A bound that is hit raises `TemplateLimitError`.
"""

import contextlib
import time

MAX_ITERATIONS = 1_000_000
MAX_RANGE = 100_000
MAX_ITEMS = 10_000_000
MAX_EXPONENT = 1_000
MAX_OUTPUT_CHARS = 1_000_000
RENDER_SECONDS = 10.0
_GUARD = "klm_loop_guard"


class TemplateLimitError(Exception):
    """A template render went past one of `limited_sandbox`'s bounds (the message says which)."""


class _Budget:
    def __init__(self, input_chars):
        self.deadline = time.monotonic() + RENDER_SECONDS
        self.iterations = 0
        self.output = 0
        self.max_output = MAX_OUTPUT_CHARS + 8 * input_chars

    def check_time(self):
        if time.monotonic() > self.deadline:
            raise TemplateLimitError(f"rendering took more than {RENDER_SECONDS:g} s")


def limited_sandbox():
    """A new bounded sandbox environment (`trim_blocks`, `lstrip_blocks`, as Transformers renders).

    Render inside `with environment.budget(input_chars):` and pass the
    output of `template.generate(...)` through `environment.count_output`.
    """
    from jinja2 import nodes
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class LimitedSandbox(ImmutableSandboxedEnvironment):
        intercepted_binops = frozenset(["*", "**"])

        def __init__(self):
            super().__init__(trim_blocks=True, lstrip_blocks=True)
            self._budget = None
            self.globals["range"] = self._range
            self.globals[_GUARD] = self._loop

        @contextlib.contextmanager
        def budget(self, input_chars=0):
            outer, self._budget = self._budget, _Budget(input_chars)
            try:
                yield self._budget
            finally:
                self._budget = outer

        def _check_time(self):
            if self._budget is not None:
                self._budget.check_time()

        def _loop(self, iterable):
            budget = self._budget
            for item in iterable:
                if budget is not None:
                    budget.iterations += 1
                    if budget.iterations > MAX_ITERATIONS:
                        raise TemplateLimitError(f"more than {MAX_ITERATIONS:,} loop iterations in one render")
                    if budget.iterations % 1024 == 0:
                        budget.check_time()
                yield item

        def _range(self, *args):
            values = range(*args)
            if len(values) > MAX_RANGE:
                raise TemplateLimitError(f"range() of {len(values):,} items (at most {MAX_RANGE:,})")
            return values

        def count_output(self, chunks):
            for chunk in chunks:
                budget = self._budget
                if budget is not None:
                    budget.output += len(chunk)
                    if budget.output > budget.max_output:
                        raise TemplateLimitError(f"more than {budget.max_output:,} characters of output")
                    budget.check_time()
                yield chunk

        def call_binop(self, context, operator, left, right):
            self._check_time()
            if operator == "**" and isinstance(right, (int, float)) and abs(right) > MAX_EXPONENT:
                raise TemplateLimitError(f"an exponent of {right!r} (at most {MAX_EXPONENT:,})")
            if operator == "*":
                for sequence, count in ((left, right), (right, left)):
                    if isinstance(sequence, (str, list, tuple)) and isinstance(count, int):
                        if len(sequence) * count > MAX_ITEMS:
                            raise TemplateLimitError(
                                f"a repetition of {len(sequence) * count:,} items (at most {MAX_ITEMS:,})"
                            )
            return super().call_binop(context, operator, left, right)

        def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 - jinja2's own signature
            __self._check_time()
            return super().call(__context, __obj, *args, **kwargs)

        def getattr(self, obj, attribute):
            self._check_time()
            return super().getattr(obj, attribute)

        def getitem(self, obj, argument):
            self._check_time()
            return super().getitem(obj, argument)

        def _parse(self, source, name, filename):
            tree = super()._parse(source, name, filename)
            # Every loop iterates through the guard, which counts iterations.
            for loop in tree.find_all(nodes.For):
                loop.iter = nodes.Call(
                    nodes.Name(_GUARD, "load", lineno=loop.lineno), [loop.iter], [], None, None, lineno=loop.lineno
                )
            return tree

    return LimitedSandbox()
