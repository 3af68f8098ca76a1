"""klm's `seed` preset trains exactly like the founding document's PyTorch loop.

The reference model (`examples/benchmarks/reference_torch.py`, plain PyTorch,
`nn.TransformerEncoder`) and klm's `KlmCausalLM` get the same weights and the
same contiguous batches (the reference's batchify/bptt) with dropout off; SGD lr 5
with gradient clipping 0.5 must then give the same loss at every step, on
every Keras backend. This pins the architecture (post-LN blocks, scaled
embeddings, sinusoidal positions, untied decoder with bias), the loss and the
optimizer to the reference's.
"""

import importlib.util

import keras
import numpy as np
import pytest
from conftest import REPO

torch = pytest.importorskip("torch", reason="the PyTorch reference needs torch (pip install torch==2.13.0)")

VOCAB, D, STEPS, BATCH, BPTT = 40, 16, 12, 4, 7


def _reference():
    spec = importlib.util.spec_from_file_location("reference_torch", REPO / "examples/benchmarks/reference_torch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _copy_weights(reference_model, lm):
    """Maps the PyTorch parameters onto klm's (PyTorch stores Linear weights as (out, in))."""
    p = {k: v.detach().numpy() for k, v in reference_model.state_dict().items()}
    backbone = lm.backbone
    embedding = backbone.token_embedding
    embedding.embeddings.assign(p["encoder.weight"])
    embedding.reverse_embeddings.assign(p["decoder.weight"].T)
    embedding.output_bias.assign(p["decoder.bias"])
    for i, block in enumerate(backbone.transformer_layers):
        prefix = f"transformer_encoder.layers.{i}."
        pairs = [
            (block.attention.qkv_dense, "self_attn.in_proj_weight", "self_attn.in_proj_bias"),
            (block.attention.output_dense, "self_attn.out_proj.weight", "self_attn.out_proj.bias"),
            (block.feedforward_intermediate, "linear1.weight", "linear1.bias"),
            (block.feedforward_output, "linear2.weight", "linear2.bias"),
        ]
        for dense, weight, bias in pairs:
            dense.kernel.assign(p[prefix + weight].T)
            dense.bias.assign(p[prefix + bias])
        for norm, name in ((block.attention_norm, "norm1"), (block.feedforward_norm, "norm2")):
            norm.gamma.assign(p[prefix + name + ".weight"])
            norm.beta.assign(p[prefix + name + ".bias"])


def test_seed_preset_matches_the_pytorch_reference_step_by_step():
    from klm.data import lm_dataset
    from klm.data.lm.model_inputs import lm_model_inputs
    from klm.models import KlmCausalLM, backbone_from_preset

    ref = _reference()
    torch.manual_seed(0)
    reference_model = ref.ReferenceTransformer(VOCAB, ninp=D, nhead=2, nhid=24, nlayers=2, dropout=0.0)
    rng = np.random.default_rng(0)
    # A learnable (periodic) stream: on pure noise SGD at lr 5 is chaotic and
    # float32 rounding differences between backends grow step by step.
    pattern = rng.integers(0, VOCAB, size=23)
    stream = np.resize(pattern, BATCH * (STEPS * BPTT + 1)).astype("int64")

    # The reference loop (sequence-first tensors).
    optimizer = torch.optim.SGD(reference_model.parameters(), lr=5.0)
    criterion = torch.nn.CrossEntropyLoss()
    train_data = ref.batchify(torch.from_numpy(stream), BATCH)
    reference_losses = []
    reference_model.train()
    for i in range(0, STEPS * BPTT, BPTT):
        data, targets = ref.get_batch(train_data, i, BPTT)
        optimizer.zero_grad()
        output = reference_model(data)
        loss = criterion(output.view(-1, VOCAB), targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(reference_model.parameters(), 0.5)
        optimizer.step()
        reference_losses.append(loss.item())

    # klm: same weights (copied before the reference trained), same batches.
    torch.manual_seed(0)
    initial = ref.ReferenceTransformer(VOCAB, ninp=D, nhead=2, nhid=24, nlayers=2, dropout=0.0)
    lm = KlmCausalLM(
        backbone_from_preset("seed", vocabulary_size=VOCAB, hidden_dim=D, intermediate_dim=24, dropout=0.0)
    )
    _copy_weights(initial, lm)
    lm.compile(
        optimizer=keras.optimizers.SGD(learning_rate=5.0, global_clipnorm=0.5),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        weighted_metrics=[],
    )
    dataset = lm_model_inputs(lm_dataset(stream.astype("int32"), BPTT, BATCH, mode="contiguous"))
    klm_losses = [float(lm.train_on_batch(x, y, return_dict=True)["loss"]) for x, y in dataset.take(STEPS)]

    assert len(klm_losses) == STEPS
    assert reference_losses[-1] < reference_losses[0] - 0.5  # it learned
    np.testing.assert_allclose(klm_losses, reference_losses, rtol=2e-4, atol=2e-4)
