import pytest

from klm.data.text.workers import OrderedPool, usable_cpus
from klm.errors import DataError

SETUP = ("klm.data.text.workers_test", "echo_worker", {"scale": 10})


def echo_worker(scale):
    """A handler for the tests: `("value", n)` -> n * scale; `("fail", n)` raises; `("modules",)` -> loaded modules."""
    import sys

    def handle(task):
        if task[0] == "fail":
            raise DataError(f"task {task[1]} failed")
        if task[0] == "modules":
            return sorted(sys.modules)
        return task[1] * scale

    return handle


def test_results_come_back_in_task_order_with_a_bounded_number_in_flight():
    handed_out = []

    def tasks():
        for i in range(50):
            handed_out.append(i)
            yield ("value", i)

    with OrderedPool(3, SETUP, light=True, in_flight=4) as pool:
        for i, result in enumerate(pool.map(tasks())):
            assert result == 10 * i
            assert len(handed_out) <= i + 1 + 4
        # The pool serves a second stream after the first.
        assert list(pool.map([("value", 7)])) == [70]
    assert usable_cpus() >= 1


def test_the_first_error_in_task_order_wins_with_its_type_and_message():
    def tasks():
        yield ("value", 1)
        yield ("fail", 2)
        yield ("value", 3)
        raise DataError("the task generator failed")

    results = []
    with pytest.raises(DataError, match="^task 2 failed$"):
        with OrderedPool(2, SETUP, light=True) as pool:
            for result in pool.map(tasks()):
                results.append(result)
    assert results == [10]

    # An error of the task generator waits for the tasks handed out before it.
    def tasks_then_error():
        yield ("value", 1)
        yield ("value", 2)
        raise DataError("the task generator failed")

    results = []
    with pytest.raises(DataError, match="task generator failed"):
        with OrderedPool(2, SETUP, light=True) as pool:
            for result in pool.map(tasks_then_error()):
                results.append(result)
    assert results == [10, 20]


def test_light_workers_do_not_import_tensorflow():
    with OrderedPool(1, SETUP, light=True) as pool:
        (modules,) = pool.map([("modules",)])
    assert "klm.data.text.workers_test" in modules
    assert "tensorflow" not in modules and "keras" not in modules


def test_a_worker_that_dies_is_reported():
    with pytest.raises(RuntimeError, match="worker process stopped unexpectedly"):
        with OrderedPool(1, ("os", "_exit", {"status": 0}), light=True) as pool:
            list(pool.map([("value", 1)]))
