"""Tests of `klm.export.generation`: the in-graph loop generates what `klm generate` does (TensorFlow backend)."""

import pytest

from klm.export.testing import klm_greedy, make_run
from klm.pretrained.checkpoint import load_run


def _tensorflow_only():
    import keras

    if keras.backend.backend() != "tensorflow":
        pytest.skip("builds TF graph functions in-process (tests/export_test.py covers the other backends)")


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("export_generation") / "lm"
    make_run(path)
    return path


@pytest.mark.heavy
def test_generate_function_matches_klm_generate_in_process(lm_run):
    _tensorflow_only()
    import tensorflow as tf

    from klm.export import generate_function

    run = load_run(lm_run)
    prompts = ["the cat", "hello world sat on the", "", "a"]
    greedy = tf.function(generate_function(run), autograph=False)
    out = greedy(tf.constant(prompts), tf.constant(6))
    texts = [t.decode() for t in out["generated_text"].numpy()]
    assert texts == klm_greedy(run, prompts, 6)
    assert all(0 <= n <= 6 for n in out["num_generated_tokens"].numpy())
    # max_new_tokens=0 returns empty texts.
    out = greedy(tf.constant(prompts), tf.constant(0))
    assert [t.decode() for t in out["generated_text"].numpy()] == [""] * 4
    # top_k=1 is greedy; a seed makes sampling repeatable.
    sample = tf.function(generate_function(run, sampling=True), autograph=False)
    args = (tf.constant(prompts), tf.constant(6))
    top1 = sample(*args, tf.constant(1), tf.constant(1.0), tf.constant(3))
    assert [t.decode() for t in top1["generated_text"].numpy()] == texts
    a = sample(*args, tf.constant(8), tf.constant(1.5), tf.constant(3))["generated_text"].numpy().tolist()
    b = sample(*args, tf.constant(8), tf.constant(1.5), tf.constant(3))["generated_text"].numpy().tolist()
    assert a == b


def test_learned_positions_limit_is_checked_in_graph(lm_run):
    _tensorflow_only()
    import tensorflow as tf

    from klm.export import generate_function

    run = load_run(lm_run)
    greedy = tf.function(generate_function(run), autograph=False)
    with pytest.raises(tf.errors.InvalidArgumentError, match="positions of the model"):
        greedy(tf.constant(["the cat"]), tf.constant(100))


@pytest.mark.parametrize("position_encoding", ["rotary", "sinusoidal"])
@pytest.mark.heavy
def test_generate_function_with_other_position_encodings(tmp_path, position_encoding):
    _tensorflow_only()
    import tensorflow as tf

    from klm.export import generate_function

    make_run(tmp_path / "lm", position_encoding=position_encoding)
    run = load_run(tmp_path / "lm")
    prompts = ["the cat", "hello world sat on the"]
    out = tf.function(generate_function(run), autograph=False)(tf.constant(prompts), tf.constant(5))
    assert [t.decode() for t in out["generated_text"].numpy()] == klm_greedy(run, prompts, 5)


def test_traced_graph_has_no_xla_ops(lm_run):
    _tensorflow_only()
    import tensorflow as tf

    from klm.export import generate_function

    run = load_run(lm_run)
    traced = tf.function(generate_function(run), autograph=False).get_concrete_function(
        tf.TensorSpec([None], tf.string), tf.TensorSpec([], tf.int32)
    )
    graph_def = traced.graph.as_graph_def()
    ops = {node.op for node in graph_def.node}
    for function in graph_def.library.function:
        ops.update(node.op for node in function.node_def)
    assert not [op for op in ops if op.startswith("Xla")]
