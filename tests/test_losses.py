"""Losses (docs/method.md §3) against slow, literal oracles written straight from the equations.

The oracles loop in Python over anchors, positives, utterances and features, in float64, and
are compared with the vectorised float32 losses for values and for gradients.
"""


import pytest
import torch
import torch.nn.functional as F

from multiemo.config import LossConfig
from multiemo.losses import (MultiEMOLoss, SoftHGRLoss, SWFCLoss, build_loss, ce_class_weights,
                             soft_hgr_loss, swfc_class_weights)

RTOL, ATOL = 1e-4, 1e-6  # float32 fast path vs float64 oracle


# -- oracles -------------------------------------------------------------------------------------

def swfc_oracle(z, labels, class_weights, temperature, gamma):
    """Eqs. 18–19 literally: per anchor j, per positive g, explicit sums over s ≠ j."""
    N, D = z.shape
    labels = labels.tolist()
    unit = []
    for i in range(N):
        norm = torch.sqrt(sum(z[i, d] ** 2 for d in range(D)))
        unit.append(z[i] / norm)
    total = 0 * z.sum()  # keeps the graph when no anchor has a positive
    for j in range(N):
        denominator = sum(torch.exp(torch.dot(unit[j], unit[s]) / temperature)
                          for s in range(N) if s != j)
        positives = [g for g in range(N) if g != j and labels[g] == labels[j]]
        if not positives:
            continue  # contributes zero, still counted in N
        inner = z.new_zeros(())
        for g in positives:
            s_jg = torch.exp(torch.dot(unit[j], unit[g]) / temperature) / denominator
            inner = inner + (1 - s_jg) ** gamma * torch.log(s_jg)
        total = total + float(class_weights[labels[j]]) * inner / len(positives)
    return -total / N


def _covariance_utterances(x):
    """(N, N) covariance with utterances as variables over their D features, as torch.cov(x)."""
    N, D = x.shape
    means = [sum(x[a, d] for d in range(D)) / D for a in range(N)]
    return [[sum((x[a, d] - means[a]) * (x[b, d] - means[b]) for d in range(D)) / (D - 1)
             for b in range(N)] for a in range(N)]


def _covariance_features(x):
    """(D, D) unbiased feature covariance over the N utterances."""
    N, D = x.shape
    means = [sum(x[i, a] for i in range(N)) / N for a in range(D)]
    return [[sum((x[i, a] - means[a]) * (x[i, b] - means[b]) for i in range(N)) / (N - 1)
             for b in range(D)] for a in range(D)]


def _trace_product(a, b):
    return sum(a[i][k] * b[k][i] for i in range(len(a)) for k in range(len(a)))


def hgr_official_oracle(features):
    """Released code written out: raw inner products, torch.cov(Q) (N × N), trace / N, total / N."""
    N, D = features[0].shape
    total = features[0].new_zeros(())
    for i in range(len(features)):
        for j in range(i + 1, len(features)):
            q, v = features[i], features[j]
            inner = sum(q[n, d] * v[n, d] for n in range(N) for d in range(D)) / N
            trace = _trace_product(_covariance_utterances(q), _covariance_utterances(v))
            total = total + inner - trace / N / 2
    return -total / N


def hgr_paper_oracle(features):
    """Eq. 20: centred features, mean inner product, D × D unbiased covariances."""
    N, D = features[0].shape
    total = features[0].new_zeros(())
    for i in range(len(features)):
        for j in range(i + 1, len(features)):
            q, v = features[i], features[j]
            q_mean = [sum(q[n, d] for n in range(N)) / N for d in range(D)]
            v_mean = [sum(v[n, d] for n in range(N)) / N for d in range(D)]
            inner = sum((q[n, d] - q_mean[d]) * (v[n, d] - v_mean[d])
                        for n in range(N) for d in range(D)) / N
            trace = _trace_product(_covariance_features(q), _covariance_features(v))
            total = total + inner - trace / 2
    return -total


def _value_and_grad(fn, *inputs):
    inputs = [x.detach().clone().requires_grad_(True) for x in inputs]
    value = fn(*inputs)
    grads = torch.autograd.grad(value, inputs)
    return value.detach().double(), [g.double() for g in grads]


def _assert_close(fast, slow):
    (value_f, grads_f), (value_s, grads_s) = fast, slow
    torch.testing.assert_close(value_f, value_s, rtol=RTOL, atol=ATOL)
    for g_f, g_s in zip(grads_f, grads_s):
        assert torch.isfinite(g_f).all()
        torch.testing.assert_close(g_f, g_s, rtol=RTOL, atol=ATOL)


# -- SWFC ------------------------------------------------------------------------------------------

CLASS_COUNTS = [40, 25, 10, 3, 22]


def _check_swfc(z, labels, temperature=0.8, gamma=2.4, alpha=1.1, counts=CLASS_COUNTS):
    weights = swfc_class_weights(counts, alpha)
    loss = SWFCLoss(weights, temperature, gamma)
    fast = _value_and_grad(lambda x: loss(x, labels), z)
    slow = _value_and_grad(lambda x: swfc_oracle(x, labels, weights, temperature, gamma), z)
    _assert_close(fast, slow)
    return fast


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_swfc_matches_oracle_random(seed):
    g = torch.Generator().manual_seed(seed)
    N = 6 + seed
    z = torch.randn(N, 5, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 3, (N,), generator=g)
    _check_swfc(z, labels, temperature=[0.5, 0.8, 1.4, 2.0][seed], gamma=[0.0, 0.5, 2.0, 2.4][seed])


def test_swfc_single_member_class_and_absent_class():
    z = torch.randn(7, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1, 1, 4, 0])  # class 4 alone (no positive); 2, 3 absent
    _check_swfc(z, labels)


def test_swfc_all_same_label():
    z = torch.randn(5, 3, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    _check_swfc(z, torch.full((5,), 2))


def test_swfc_single_utterance_is_zero_with_finite_grads():
    value, (grad,) = _check_swfc(torch.randn(1, 4, dtype=torch.float64), torch.tensor([1]))
    assert value == 0 and torch.equal(grad, torch.zeros_like(grad))


def test_swfc_no_positive_anywhere_is_zero():
    value, (grad,) = _check_swfc(torch.randn(4, 3, dtype=torch.float64), torch.arange(4))
    assert value == 0 and torch.isfinite(grad).all()


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_swfc_finite_when_similarity_is_one(gamma):
    # N = 2 with one label: s = 1 whatever z is, so the loss is constantly 0 and its gradient
    # 0; d(1 − s)^γ/ds is infinite at s = 1 for γ < 1 (the oracle's gradient is NaN there).
    loss = SWFCLoss(swfc_class_weights([1, 1], 1.0), temperature=0.8, gamma=gamma)
    value, (grad,) = _value_and_grad(lambda x: loss(x, torch.tensor([0, 0])), torch.randn(2, 4))
    assert value == 0 and torch.equal(grad, torch.zeros_like(grad))


def test_swfc_sharp_temperature_stays_finite():
    z = torch.randn(50, 8, generator=torch.Generator().manual_seed(7), requires_grad=True)
    labels = torch.randint(0, 5, (50,), generator=torch.Generator().manual_seed(8))
    loss = SWFCLoss(swfc_class_weights(CLASS_COUNTS, 1.0), temperature=1e-5, gamma=0.3)(z, labels)
    (grad,) = torch.autograd.grad(loss, z)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()


def test_swfc_computes_in_float32_for_low_precision_inputs():
    z = torch.randn(12, 8, generator=torch.Generator().manual_seed(9)).bfloat16()
    labels = torch.randint(0, 3, (12,), generator=torch.Generator().manual_seed(10))
    loss = SWFCLoss(swfc_class_weights(CLASS_COUNTS, 1.2), 1.4, 2.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss(z, labels)
    assert value.dtype == torch.float32
    torch.testing.assert_close(value, loss(z.float(), labels))


def test_swfc_rejects_bad_arguments():
    weights = swfc_class_weights([1, 1], 1.0)
    with pytest.raises(ValueError, match="temperature"):
        SWFCLoss(weights, 0.0, 2.0)
    with pytest.raises(ValueError, match="gamma"):
        SWFCLoss(weights, 1.0, -1.0)
    with pytest.raises(ValueError, match=r"\(5, 2\)"):
        SWFCLoss(weights, 1.0, 2.0)(torch.randn(5, 2), torch.zeros(4, dtype=torch.long))


def test_swfc_class_weights_by_hand():
    # (40/30, 40/10)^2 = (16/9, 16) → L1: (0.1, 0.9)
    torch.testing.assert_close(swfc_class_weights([30, 10], 2.0), torch.tensor([0.1, 0.9]))
    torch.testing.assert_close(swfc_class_weights([1, 2, 3], 0.0), torch.full((3,), 1 / 3))
    # count 0: weight 0, left out of the normalisation
    torch.testing.assert_close(swfc_class_weights([30, 0, 10], 1.0), torch.tensor([0.25, 0, 0.75]))
    expected = torch.tensor([(35 / n) ** 1.2 for n in (20, 10, 5)])
    torch.testing.assert_close(swfc_class_weights([20, 10, 5], 1.2), expected / expected.sum())
    for bad in ([3, -1], [0, 0]):
        with pytest.raises(ValueError, match="counts"):
            swfc_class_weights(bad, 1.0)


# -- Soft-HGR --------------------------------------------------------------------------------------

ORACLES = {"official": hgr_official_oracle, "paper": hgr_paper_oracle}


def _check_hgr(features, variant):
    fast = _value_and_grad(lambda *f: soft_hgr_loss(f, variant), *features)
    slow = _value_and_grad(lambda *f: ORACLES[variant](f), *features)
    _assert_close(fast, slow)
    return fast


@pytest.mark.parametrize("variant", ["official", "paper"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hgr_matches_oracle_random(variant, seed):
    g = torch.Generator().manual_seed(seed)
    N, D = 5 + seed, 4
    features = [torch.randn(N, D, generator=g, dtype=torch.float64) + 0.5 for _ in range(3)]
    _check_hgr(features, variant)


@pytest.mark.parametrize("variant", ["official", "paper"])
def test_hgr_two_modalities_is_one_pair(variant):
    g = torch.Generator().manual_seed(3)
    _check_hgr([torch.randn(6, 3, generator=g, dtype=torch.float64) for _ in range(2)], variant)


def test_hgr_official_equals_released_formula_with_torch_cov():
    g = torch.Generator().manual_seed(4)
    f = [torch.randn(9, 16, generator=g, dtype=torch.float64) for _ in range(3)]
    N = 9
    total = 0.0
    for i, j in ((0, 1), (0, 2), (1, 2)):
        inner = torch.mean(torch.sum(f[i] * f[j], dim=-1), dim=0)
        trace = torch.trace(torch.cov(f[i]) @ torch.cov(f[j])) / N
        total += inner - trace / 2
    torch.testing.assert_close(soft_hgr_loss(f, "official").double(), -total / N,
                               rtol=RTOL, atol=ATOL)


def test_hgr_single_utterance_is_defined():
    f = [torch.randn(1, 4, generator=torch.Generator().manual_seed(s), dtype=torch.float64)
         for s in range(3)]
    # official: the 1 × 1 "covariance" is the utterance's variance over its features
    value, grads = _check_hgr(f, "official")
    assert torch.isfinite(value)
    # paper: centred over a single utterance, everything is 0
    value, grads = _value_and_grad(lambda *x: soft_hgr_loss(x, "paper"), *f)
    assert value == 0 and all(torch.equal(g, torch.zeros_like(g)) for g in grads)


@pytest.mark.parametrize("variant", ["official", "paper"])
def test_hgr_fewer_than_two_modalities_is_zero_and_backpropagates(variant):
    f = torch.randn(4, 3, requires_grad=True)
    value = soft_hgr_loss([f], variant)
    assert value.item() == 0 and value.requires_grad
    value.backward()
    assert torch.equal(f.grad, torch.zeros_like(f))
    assert soft_hgr_loss([], variant).item() == 0
    assert soft_hgr_loss([torch.zeros(0, 3)] * 3, variant).item() == 0  # empty batch


def test_swfc_empty_batch_is_zero():
    loss = SWFCLoss(swfc_class_weights([1, 1], 1.0), 1.0, 2.0)
    assert loss(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)).item() == 0


def test_hgr_module_and_errors():
    f = [torch.randn(4, 3) for _ in range(3)]
    assert torch.equal(SoftHGRLoss("paper")(f), soft_hgr_loss(f, "paper"))
    with pytest.raises(ValueError, match="variant"):
        SoftHGRLoss("released")
    with pytest.raises(ValueError, match="one shape"):
        soft_hgr_loss([torch.randn(4, 3), torch.randn(5, 3)])


def test_hgr_low_precision_inputs_give_float32():
    f = [torch.randn(6, 8, generator=torch.Generator().manual_seed(s)).half() for s in range(3)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = soft_hgr_loss(f)
    assert value.dtype == torch.float32
    torch.testing.assert_close(value, soft_hgr_loss([x.float() for x in f]))


# -- cross-entropy and the objective -------------------------------------------------------------

def test_ce_class_weights_by_hand():
    assert ce_class_weights([30, 10], 0.0) is None
    # (40/30, 40/10)^0.5 = (1.1547, 2), mean 1.5774
    torch.testing.assert_close(ce_class_weights([30, 10], 0.5),
                               torch.tensor([1.1547005, 2.0]) / 1.5773503)
    # absent class: weight 0, mean 1 over the present ones
    torch.testing.assert_close(ce_class_weights([30, 0, 10], 1.0), torch.tensor([0.5, 0, 1.5]))
    with pytest.raises(ValueError, match="power"):
        ce_class_weights([1, 2], -1.0)


def _batch(seed, N=10, C=5, D=6, modalities=3):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(N, C, generator=g)
    z = torch.randn(N, D, generator=g)
    fused = [torch.randn(N, D, generator=g) for _ in range(modalities)]
    labels = torch.randint(0, C, (N,), generator=g)
    return logits, z, fused, labels


KW = dict(ce_weight=0.4, swfc_weight=0.3, hgr_weight=0.3, temperature=1.4, gamma=2.0, alpha=1.2)


@pytest.mark.parametrize("power", [0.0, 1.0])
def test_multiemo_total_is_weighted_sum(power):
    logits, z, fused, labels = _batch(0)
    loss = MultiEMOLoss(CLASS_COUNTS, **KW, ce_class_weight_power=power)
    total, parts = loss(logits, z, fused, labels)
    weight = ce_class_weights(CLASS_COUNTS, power)
    ce = F.cross_entropy(logits, labels, weight=weight)  # torch's (weighted) mean
    swfc = SWFCLoss(swfc_class_weights(CLASS_COUNTS, 1.2), 1.4, 2.0)(z, labels)
    hgr = soft_hgr_loss(fused, "official")
    torch.testing.assert_close(parts["ce"], ce)
    torch.testing.assert_close(parts["swfc"], swfc)
    torch.testing.assert_close(parts["hgr"], hgr)
    torch.testing.assert_close(total, 0.4 * ce + 0.3 * swfc + 0.3 * hgr)
    assert not any(p.requires_grad for p in parts.values())


def test_multiemo_zero_coefficient_skips_term():
    logits, z, fused, labels = _batch(1)
    no_aux = MultiEMOLoss(CLASS_COUNTS, **{**KW, "swfc_weight": 0.0, "hgr_weight": 0.0})
    # z and fused are never touched: passing None would fail if they were computed
    total, parts = no_aux(logits, None, None, labels)
    torch.testing.assert_close(total, 0.4 * F.cross_entropy(logits, labels))
    assert parts["swfc"].item() == 0 and parts["hgr"].item() == 0
    no_ce = MultiEMOLoss(CLASS_COUNTS, **{**KW, "ce_weight": 0.0})
    total, parts = no_ce(logits, z, fused, labels)
    assert parts["ce"].item() == 0
    torch.testing.assert_close(total, 0.3 * parts["swfc"] + 0.3 * parts["hgr"])


def test_multiemo_gradients_and_edge_batches():
    loss = MultiEMOLoss(CLASS_COUNTS, **KW, hgr_variant="paper", ce_class_weight_power=0.5)
    for N in (1, 2, 7):
        logits, z, fused, labels = _batch(N, N=N)
        inputs = [logits.requires_grad_(), z.requires_grad_(), *[f.requires_grad_() for f in fused]]
        total, _ = loss(logits, z, fused, labels)
        grads = torch.autograd.grad(total, inputs)
        assert torch.isfinite(total) and all(torch.isfinite(g).all() for g in grads)


def test_multiemo_weighted_ce_with_only_zero_weight_labels_is_zero():
    loss = MultiEMOLoss([5, 0, 5], **{**KW, "swfc_weight": 0.0, "hgr_weight": 0.0},
                        ce_class_weight_power=1.0)
    total, _ = loss(torch.randn(3, 3), None, None, torch.tensor([1, 1, 1]))
    assert total.item() == 0


def test_build_loss_from_config():
    loss = build_loss(LossConfig(), CLASS_COUNTS)
    assert (loss.ce_weight, loss.swfc_weight, loss.hgr_weight) == (0.4, 0.3, 0.3)
    assert (loss.swfc.temperature, loss.swfc.gamma, loss.hgr_variant) == (1.4, 2.0, "official")
    assert loss.ce_class_weights is None
    torch.testing.assert_close(loss.swfc.class_weights, swfc_class_weights(CLASS_COUNTS, 1.2))
    paper = build_loss(LossConfig(hgr_variant="paper", ce_class_weight_power=1.0), CLASS_COUNTS)
    assert paper.hgr_variant == "paper" and paper.ce_class_weights is not None
    with pytest.raises(ValueError, match="variant"):
        MultiEMOLoss(CLASS_COUNTS, **KW, hgr_variant="nope")
    with pytest.raises(ValueError, match="hgr_weight"):
        MultiEMOLoss(CLASS_COUNTS, **{**KW, "hgr_weight": -1.0})
