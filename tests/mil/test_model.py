"""Gated attention MIL: shapes, masking, multi-class, determinism."""

from __future__ import annotations

import pytest
import torch

from napari_wsirobust.mil import GatedAttentionMIL
from napari_wsirobust.mil.model import parameter_shapes


def _model(seed: int = 0, **kwargs) -> GatedAttentionMIL:
    torch.manual_seed(seed)
    return GatedAttentionMIL(in_dim=16, **kwargs).eval()


def test_shapes_and_details() -> None:
    model = _model(n_classes=3)
    x = torch.randn(4, 7, 16)
    logits, attention = model(x, return_attention=True)
    assert logits.shape == (4, 3) and attention.shape == (4, 7)
    torch.testing.assert_close(attention.sum(dim=1), torch.ones(4))
    out = model.forward_details(x)
    assert out.representation.shape == (4, model.hidden_dim)
    assert out.instance_logits is not None and out.instance_logits.shape == (4, 7, 3)
    assert _model(instance_classifier=False).forward_details(x).instance_logits is None


def _attention_and_projection_grads(
    model: GatedAttentionMIL, train_attention: bool | torch.Tensor
) -> tuple[float, float]:
    model.zero_grad()
    out = model.forward_details(torch.randn(3, 6, 16), train_attention=train_attention)
    out.representation.pow(2).sum().backward()
    attention_grad = sum(
        float(p.grad.abs().sum())
        for m in (model.attention_v, model.attention_u, model.attention_w)
        for p in m.parameters()
        if p.grad is not None
    )
    return attention_grad, float(model.projection[0].weight.grad.abs().sum())


def test_detached_attention_trains_the_projection_only() -> None:
    """train_attention=False: same outputs, but a loss on the representation reaches the projection
    and never the attention (the paired-scan term uses it)."""
    model = _model()
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        a, b = model.forward_details(x), model.forward_details(x, train_attention=False)
    torch.testing.assert_close(a.representation, b.representation)
    torch.testing.assert_close(a.attention, b.attention)
    attention_grad, projection_grad = _attention_and_projection_grads(model, train_attention=False)
    assert attention_grad == 0.0 and projection_grad > 0.0
    attention_grad, projection_grad = _attention_and_projection_grads(model, train_attention=True)
    assert attention_grad > 0.0 and projection_grad > 0.0
    # per bag: detached for every bag is the same as False; one trained bag is enough for a gradient
    none = torch.tensor([False, False, False])
    assert _attention_and_projection_grads(model, train_attention=none)[0] == 0.0
    assert _attention_and_projection_grads(model, train_attention=torch.tensor([False, True, False]))[0] > 0.0


def test_padding_gets_zero_attention_and_changes_nothing() -> None:
    model = _model()
    bag = torch.randn(1, 5, 16)
    padded = torch.cat([bag, torch.randn(1, 3, 16) * 100], dim=1)  # large junk in the padding
    mask = torch.tensor([[True] * 5 + [False] * 3])
    with torch.no_grad():
        logits_padded, attention = model(padded, mask, return_attention=True)
        logits_plain = model(bag)
    assert (attention[0, 5:] == 0).all()
    torch.testing.assert_close(logits_padded, logits_plain)


def test_variable_bag_sizes_in_one_batch() -> None:
    model = _model()
    a, b = torch.randn(3, 16), torch.randn(6, 16)
    batch = torch.zeros(2, 6, 16)
    batch[0, :3], batch[1] = a, b
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[0, :3], mask[1] = True, True
    with torch.no_grad():
        together = model(batch, mask)
        torch.testing.assert_close(together[0], model(a[None])[0])
        torch.testing.assert_close(together[1], model(b[None])[0])


def test_multiclass_training_step_reduces_loss() -> None:
    model = _model(n_classes=4).train()
    torch.manual_seed(1)
    x = torch.randn(8, 10, 16)
    y = torch.arange(8) % 4
    x[torch.arange(8), 0] += y[:, None].float() * 3  # one informative tile per bag
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_deterministic_with_a_seed() -> None:
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        torch.testing.assert_close(_model(seed=3)(x), _model(seed=3)(x))
        assert not torch.allclose(_model(seed=3)(x), _model(seed=4)(x))


def test_bad_inputs_are_explained() -> None:
    model = _model()
    with pytest.raises(ValueError, match=r"expected features of shape \(B, N, 16\)"):
        model(torch.randn(2, 5, 8))
    with pytest.raises(ValueError, match="entirely masked"):
        model(torch.randn(1, 3, 16), torch.zeros(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask shape"):
        model(torch.randn(1, 3, 16), torch.ones(1, 4, dtype=torch.bool))


@pytest.mark.parametrize("instance_classifier", [True, False], ids=["instance", "no-instance"])
@pytest.mark.parametrize(
    "sizes",
    [
        {"in_dim": 12, "n_classes": 2, "hidden_dim": 16, "attention_dim": 8},
        {"in_dim": 5, "n_classes": 4, "hidden_dim": 3, "attention_dim": 7},
    ],
    ids=["2-class", "4-class"],
)
def test_parameter_shapes_match_a_built_model(sizes: dict[str, int], instance_classifier: bool) -> None:
    """The layout that checkpoints are checked against, without building a head, is the model's own."""
    built = GatedAttentionMIL(**sizes, instance_classifier=instance_classifier, dropout=0.1)
    actual = {name: tuple(t.shape) for name, t in built.state_dict().items()}
    expected = parameter_shapes(sizes, instance_classifier)
    assert list(expected.items()) == list(actual.items())  # names, order and shapes
