import collections
import threading

import pytest

from klm.generate import generate_reply, generate_text
from klm.serve.engine import ServedModel
from klm.serve.scheduler import BatchScheduler, Sequence
from klm.serve.testing import make_lm_run

PROMPTS = ["the cat", "hello world sat on", "", "a quick brown fox and then a big"]
LENGTHS = [3, 9, 5, 12]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    return ServedModel.load(make_lm_run(tmp_path_factory.mktemp("serve") / "lm"), name="lm")


def decode(served, prompts, lengths, max_batch_size=16, stop=(), cancel_after=None):
    """Runs one batched decode; returns per row (streamed text, finish event or None)."""
    events = collections.defaultdict(list)
    sequences = []
    for index, (prompt, length) in enumerate(zip(prompts, lengths)):
        cancelled = threading.Event()

        def emit(event, index=index, cancelled=cancelled):
            events[index].append(event)
            if index == cancel_after and event["type"] == "text":
                cancelled.set()

        ids = served.completion_prompt_ids(prompt)
        sequences.append(Sequence(ids, length, emit, temperature=0, stop=stop, index=index, cancelled=cancelled))
    BatchScheduler(served, max_batch_size).run_once(sequences)
    out = []
    for index in range(len(prompts)):
        streamed = "".join(e["text"] for e in events[index] if e["type"] == "text")
        finish = [e for e in events[index] if e["type"] == "finish"]
        out.append((streamed, finish[0] if finish else None))
    return out


@pytest.mark.heavy
def test_a_batch_of_different_prompt_and_response_lengths_equals_klm_generate_row_by_row(served):
    expected = [
        generate_text(served.checkpoint, [prompt], max_new_tokens=length, sampler="greedy")[0]
        for prompt, length in zip(PROMPTS, LENGTHS)
    ]
    assert any(expected)
    for streamed, finish in decode(served, PROMPTS, LENGTHS):
        assert finish is not None and streamed == finish["text"]
    assert [finish["text"] for _, finish in decode(served, PROMPTS, LENGTHS)] == expected
    results = decode(served, PROMPTS, LENGTHS)
    for (_, finish), length in zip(results, LENGTHS):
        assert 0 < finish["completion_tokens"] <= length
        assert finish["finish_reason"] == ("length" if finish["completion_tokens"] == length else "stop")


def test_stop_strings_cut_the_response_as_klm_generate_stop_does(served):
    full = generate_text(served.checkpoint, [PROMPTS[1]], max_new_tokens=12, sampler="greedy")[0]
    words = full.split()
    assert len(words) >= 3, full
    stop = " " + words[2]
    expected = generate_reply(served.checkpoint, PROMPTS[1], raw=True, max_new_tokens=12, sampler="greedy", stop=[stop])
    (streamed, finish), _ = decode(served, [PROMPTS[1], PROMPTS[0]], [12, 4], stop=[stop])
    assert finish["text"] == streamed == expected == full[: full.find(stop)]
    assert finish["finish_reason"] == "stop"


@pytest.mark.heavy
def test_a_cancelled_row_leaves_the_batch_and_the_others_are_unchanged(served):
    alone = decode(served, PROMPTS, LENGTHS)
    with_cancel = decode(served, PROMPTS, LENGTHS, cancel_after=3)
    assert with_cancel[3][1] is None  # cancelled after its first piece: no finish
    assert [r[1]["text"] for r in with_cancel[:3]] == [r[1]["text"] for r in alone[:3]]


def test_the_scheduler_thread_batches_what_waits_and_drains_on_stop(served):
    scheduler = BatchScheduler(served, max_batch_size=3)
    done = collections.defaultdict(list)
    sequences = [
        Sequence(served.completion_prompt_ids(p), n, done[i].append, temperature=0, index=i)
        for i, (p, n) in enumerate(zip(PROMPTS, LENGTHS))
    ]
    scheduler.submit(sequences)  # queued before the thread starts: batches of 3, then 1
    scheduler.start()
    scheduler.stop()  # waits for every submitted sequence
    assert all(any(e["type"] == "finish" for e in done[i]) for i in range(len(PROMPTS)))
    assert scheduler.stats["batches"] == 2 and scheduler.stats["sequences"] == 4
    with pytest.raises(RuntimeError, match="shutting down"):
        scheduler.submit(sequences[:1])


def test_seeded_sampling_does_not_depend_on_the_batch(served):
    def sampled(batch_prompts):
        events = collections.defaultdict(list)
        sequences = [
            Sequence(served.completion_prompt_ids(p), 8, events[i].append, temperature=1.0, seed=7, index=i)
            for i, p in enumerate(batch_prompts)
        ]
        BatchScheduler(served).run_once(sequences)
        return [next(e for e in events[i] if e["type"] == "finish")["text"] for i in range(len(batch_prompts))]

    assert sampled([PROMPTS[0]])[0] == sampled([PROMPTS[0], PROMPTS[1], PROMPTS[3]])[0]
