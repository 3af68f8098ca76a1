"""Smoke tests for examples/benchmarks/reference_torch.py (plain PyTorch
baselines). Tiny random data only; skipped when torch is not installed."""

import importlib.util
import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

_PATH = Path(__file__).resolve().parents[1] / "examples" / "benchmarks" / "reference_torch.py"


@pytest.fixture(scope="module")
def ref():
    spec = importlib.util.spec_from_file_location("reference_torch", _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


V = 50
GPT_CFG = dict(
    vocab_size=V, hidden_dim=32, num_layers=2, num_heads=2, intermediate_dim=64, max_sequence_length=16, dropout=0.0
)


def test_basic_english_and_vocab(ref):
    assert ref.basic_english('The "Cat", (it\'s) here. Ok?!') == [
        "the",
        "cat",
        ",",
        "(",
        "it",
        "'",
        "s",
        ")",
        "here",
        ".",
        "ok",
        "!",
    ]
    vocab = ref.build_vocab([["b", "a", "<unk>", "b"], ["c", "a"]])
    assert vocab == {"<unk>": 0, "a": 1, "b": 2, "c": 3}
    first = ref.build_vocab([["b", "a", "b", "c", "a"]], tie_break="first")
    assert first == {"<unk>": 0, "a": 2, "b": 1, "c": 3}
    ids = ref.encode([["a", "zzz"], [], ["c"]], vocab)
    assert ids.tolist() == [1, 0, 3]


@pytest.mark.parametrize("vocab_size", [50, 12000])
def test_reference_param_count_formula(ref, vocab_size):
    model = ref.ReferenceTransformer(vocab_size)
    n = sum(p.numel() for p in model.parameters())
    d, h, L, Vs = 200, 200, 2, vocab_size
    assert n == Vs * d + Vs * d + Vs + L * (4 * d * d + 4 * d + 2 * d * h + h + d + 4 * d)
    assert n == ref.reference_param_count(vocab_size)


def test_reference_two_steps(ref):
    g = torch.Generator().manual_seed(0)
    train = torch.randint(0, V, (20 * 80,), generator=g)
    held = torch.randint(0, V, (10 * 40,), generator=g)
    out = ref.train_reference(train, held, held, V, max_steps=2, log=lambda s: None)
    assert out["steps"] == 2 and out["tokens"] == 2 * 35 * 20
    assert math.isfinite(out["test_ppl"]) and math.isfinite(out["valid_ppl"])
    assert out["peak_rss_mb"] > 0


def test_reference_loss_decreases_on_repeated_sequence(ref):
    pattern = torch.arange(V).repeat(20)  # deterministic next token
    train = pattern.repeat(2)  # 2000 ids -> 100 rows x 20 cols, ~3 batches/epoch
    out = ref.train_reference(train, None, None, V, epochs=10, max_steps=20, log=lambda s: None)
    losses = out["losses"]
    assert out["steps"] == 20
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.5


def test_gpt_two_steps(ref):
    out = ref.benchmark_gpt(GPT_CFG, batch_size=2, seq_len=16, steps=2, warmup=0)
    assert len(out["losses"]) == 2 and out["tokens_per_second"] > 0
    assert math.isfinite(out["losses"][-1])
    model = ref.GPTReference(**GPT_CFG)
    assert model.lm_head.weight is model.wte.weight


def test_gpt_loss_decreases_on_repeated_sequence(ref):
    torch.manual_seed(0)
    model = ref.GPTReference(**GPT_CFG)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    seq = torch.arange(17) % 7
    x, y = seq[:-1].unsqueeze(0).repeat(2, 1), seq[1:].unsqueeze(0).repeat(2, 1)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        _, loss = model(x, y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 1.0


def test_flops_per_token_reference_shape(ref):
    f = ref.flops_per_token(12000, 200, 2, 200, 35)
    assert f == 6 * (2 * (4 * 200 * 200 + 2 * 200 * 200) + 12000 * 200) + 6 * 2 * 35 * 200
    assert abs(f / 1e6 - 17.4) < 0.1


def test_reference_step_benchmark_runs(ref):
    out = ref.benchmark_reference_step(vocab_size=V, batch_size=4, bptt=8, steps=2, warmup=1)
    assert out["ms_per_step"] > 0 and out["tokens_per_second"] > 0
