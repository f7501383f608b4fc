"""The MultiEMO network: parameter counts, an oracle for DialogueRNN, padding, ablations."""

import itertools

import pytest
import torch
from torch import nn

from multiemo.config import ModelConfig
from multiemo.model import build_model, count_parameters
from multiemo.model.dialoguernn import DialogueRNN, reverse_within_length, run_lockstep

from builders import IEMOCAP, MELD, random_batch, small


def test_parameter_counts_match_the_released_model():
    assert count_parameters(build_model(MELD)) == 10_392_583
    assert count_parameters(build_model(IEMOCAP)) == 29_670_918


def released_dialoguernn(rnn: DialogueRNN, u: torch.Tensor, party_mask: torch.Tensor) -> torch.Tensor:
    """Literal transcription of the released DialogueRNN cell loop (seq-first, every step,
    every party, attention over the whole history), sharing ``rnn``'s parameters.

    u: (U, B, D); party_mask: (U, B, P) one-hot. Returns e: (U, B, D).
    """
    U, B, D = u.shape
    g_hist = torch.zeros(0, B, D, dtype=u.dtype)
    q = torch.zeros(B, party_mask.shape[2], D, dtype=u.dtype)
    e = None
    es = []
    for u_t, qmask in zip(u, party_mask):
        idx = torch.argmax(qmask, 1)
        q0_sel = torch.stack([q[b, idx[b]] for b in range(B)])
        g = rnn.g_cell(torch.cat([u_t, q0_sel], 1), torch.zeros(B, D, dtype=u.dtype) if len(g_hist) == 0 else g_hist[-1])
        if len(g_hist) == 0:
            c = torch.zeros(B, D, dtype=u.dtype)
        else:
            alpha = torch.softmax(rnn.attention(g_hist), dim=0).permute(1, 2, 0)  # (B, 1, t-1)
            c = torch.bmm(alpha, g_hist.transpose(0, 1))[:, 0, :]
        u_c = torch.cat([u_t, c], 1).unsqueeze(1).expand(-1, q.shape[1], -1)
        qs = rnn.p_cell(u_c.reshape(-1, 2 * D), q.reshape(-1, D)).view(B, -1, D)
        m = qmask.unsqueeze(2)
        q = q * (1 - m) + qs * m
        e = rnn.e_cell(torch.stack([q[b, idx[b]] for b in range(B)]), torch.zeros(B, D, dtype=u.dtype) if e is None else e)
        g_hist = torch.cat([g_hist, g.unsqueeze(0)], 0)
        es.append(e)
    return torch.stack(es)


@pytest.mark.parametrize("seed", [0, 1])
def test_dialoguernn_matches_the_released_cell_values_and_gradients(seed):
    torch.manual_seed(seed)
    B, U, D, P = 4, 7, 16, 3
    rnn = DialogueRNN(D).double()
    lengths = torch.tensor([7, 3, 5, 1])
    u = torch.randn(B, U, D, dtype=torch.float64, requires_grad=True)
    speaker = torch.randint(0, P, (B, U))
    mask = torch.arange(U)[None] < lengths[:, None]
    ours = rnn(u, speaker * mask, lengths)
    # the released code runs each dialogue over its own steps; compare dialogue by dialogue
    for b in range(B):
        n = int(lengths[b])
        ref = released_dialoguernn(rnn, u[b:b + 1, :n].transpose(0, 1),
                                   nn.functional.one_hot(speaker[b:b + 1, :n], P).double().transpose(0, 1))
        torch.testing.assert_close(ours[b, :n], ref[:, 0], rtol=1e-10, atol=1e-10)
        assert torch.all(ours[b, n:] == 0)
    # gradients through every parameter and the input, on a random real-position objective
    weight = torch.randn(B, U, D, dtype=torch.float64) * mask[..., None]
    grads = torch.autograd.grad((ours * weight).sum(), [u, *rnn.parameters()])
    ref_loss = sum((released_dialoguernn(rnn, u[b:b + 1, :int(n)].transpose(0, 1),
                                         nn.functional.one_hot(speaker[b:b + 1, :int(n)], P).double().transpose(0, 1))[:, 0]
                    * weight[b, :int(n)]).sum() for b, n in enumerate(lengths))
    ref_grads = torch.autograd.grad(ref_loss, [u, *rnn.parameters()])
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-9, atol=1e-10)


def test_recurrences_in_lockstep_equal_each_run_alone():
    """All DialogueRNNs of a model step together; each must still compute what it computes alone."""
    torch.manual_seed(3)
    B, U, D = 3, 6, 8
    rnns = [DialogueRNN(D).double() for _ in range(3)]
    lengths = torch.tensor([6, 2, 4])
    mask = torch.arange(U)[None] < lengths[:, None]
    u = torch.randn(3, B, U, D, dtype=torch.float64, requires_grad=True)
    speaker = torch.randint(0, 4, (3, B, U)) * mask
    together = run_lockstep(rnns, u, speaker, lengths)
    alone = torch.stack([r(u[i], speaker[i], lengths) for i, r in enumerate(rnns)])
    torch.testing.assert_close(together, alone, rtol=1e-12, atol=1e-12)
    weight = torch.randn_like(together)
    params = [p for r in rnns for p in r.parameters()]
    for g, r in zip(torch.autograd.grad((together * weight).sum(), [u, *params]),
                    torch.autograd.grad((alone * weight).sum(), [u, *params])):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)


def test_dialoguernn_backward_with_recurrent_dropout_matches_finite_differences():
    """The hand-written backward pass, checked against finite differences with dropout_rec on
    (the same dropout masks on every evaluation) and two recurrences in lockstep."""
    B, U, D = 3, 4, 3
    rnns = [DialogueRNN(D, dropout_rec=0.3).double() for _ in range(2)]
    lengths = torch.tensor([4, 2, 3])
    mask = torch.arange(U)[None] < lengths[:, None]
    speaker = torch.randint(0, 3, (2, B, U), generator=torch.Generator().manual_seed(0)) * mask
    u = torch.randn(2, B, U, D, dtype=torch.float64, requires_grad=True)
    params = [p for r in rnns for p in r.parameters()]

    def run(u, *params):
        torch.manual_seed(7)  # same masks every call
        return run_lockstep(rnns, u, speaker, lengths) * mask[..., None]

    out = run(u, *params)
    for r in rnns:
        r.eval()
    assert not torch.allclose(out, run(u, *params))  # dropout is on in training mode only
    for r in rnns:
        r.train()
    assert torch.autograd.gradcheck(run, (u, *params), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_attention_matches_torch_multihead_attention_per_dialogue():
    """Our packed, masked cross-attention against ``torch.nn.MultiheadAttention`` run on each
    dialogue alone with a key padding mask: values and gradients."""
    from multiemo.model.attention import MultiHeadAttention, Packing

    torch.manual_seed(0)
    D, H = 8, 2
    ours = MultiHeadAttention(D, H).double()
    ref = nn.MultiheadAttention(D, H, batch_first=True).double()
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight]))
        ref.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))
        ref.out_proj.weight.copy_(ours.out_proj.weight)
        ref.out_proj.bias.copy_(ours.out_proj.bias)
    lengths = [4, 1, 3]
    mask = torch.arange(4)[None] < torch.tensor(lengths)[:, None]
    keys = mask.clone()
    keys[0, 1] = False  # an absent key vector
    packing = Packing(mask)
    query = torch.randn(sum(lengths), D, dtype=torch.float64, requires_grad=True)
    key_value = torch.randn(sum(lengths), D, dtype=torch.float64, requires_grad=True)
    out = ours(query, MultiHeadAttention.project_keys_values([ours], key_value, packing)[0], packing.keys(keys, H), packing)
    expected, start = [], 0
    for b, n in enumerate(lengths):
        q, kv = query[start:start + n][None], key_value[start:start + n][None]
        expected.append(ref(q, kv, kv, key_padding_mask=~keys[b, :n][None], need_weights=False)[0][0])
        start += n
    expected = torch.cat(expected)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)
    weight = torch.randn_like(out)
    ours_grads = torch.autograd.grad((out * weight).sum(), [query, key_value, *ours.parameters()])
    ref_grads = torch.autograd.grad((expected * weight).sum(), [query, key_value, *ref.parameters()])
    torch.testing.assert_close(ours_grads[0], ref_grads[0], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ours_grads[1], ref_grads[1], rtol=1e-10, atol=1e-10)
    in_proj = torch.cat([ours_grads[2], ours_grads[4], ours_grads[6]])  # q, k, v weights
    torch.testing.assert_close(in_proj, ref_grads[2], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ours_grads[8], ref_grads[4], rtol=1e-10, atol=1e-10)  # out_proj weight


def test_multiattn_gives_each_attention_its_own_keys_and_values():
    """MultiAttn projects the keys and values of all attentions reading a modality at once; each
    must still get exactly its own, as if it projected them alone."""
    from multiemo.model.attention import MultiHeadAttention, Packing
    from multiemo.model.multiattn import MultiAttn

    torch.manual_seed(0)
    mods = ("text", "audio", "visual")
    fusion = MultiAttn(mods, dim=8, num_heads=2, hidden_dim=16, num_layers=2).double()
    mask = torch.arange(5)[None] < torch.tensor([5, 2, 4])[:, None]
    packing = Packing(mask)
    uni = {m: torch.randn(int(mask.sum()), 8, dtype=torch.float64) for m in mods}
    keys = {m: packing.keys(mask, 2) for m in mods}
    fused = fusion(uni, {m: mask for m in mods}, packing)
    for m in mods:
        others = [o for o in mods if o != m]
        x = uni[m]
        for layer in fusion.stacks[m]:
            alone = [MultiHeadAttention.project_keys_values([attn], uni[o], packing)[0] for attn, o in zip(layer.cross, others)]
            x = layer(x, alone, [keys[o] for o in others], packing)
        torch.testing.assert_close(fused[m], x, rtol=1e-12, atol=1e-12)


def test_meld_text_only_has_no_recurrence_and_runs():
    from dataclasses import replace
    model = build_model(replace(small(MELD), modalities=("text",)))
    assert len(model.context) == 0
    feats, speaker, mask = random_batch(2, 4, [4, 2])
    assert model({"text": feats["text"]}, speaker, mask).logits.shape == (2, 4, 7)


def test_reverse_within_length_reverses_each_dialogue_and_is_an_involution():
    lengths = torch.tensor([5, 2, 4])
    x = torch.arange(15.0).view(3, 5)
    once = reverse_within_length(x, lengths)
    # each dialogue's real utterances in reverse order; its padding where it was
    assert once.tolist() == [[4, 3, 2, 1, 0], [6, 5, 7, 8, 9], [13, 12, 11, 10, 14]]
    torch.testing.assert_close(reverse_within_length(once, lengths), x)
    v = torch.randn(3, 5, 2)  # trailing feature dimensions move with their utterance
    torch.testing.assert_close(reverse_within_length(v, lengths)[2, :4], v[2, :4].flip(0))
    torch.testing.assert_close(reverse_within_length(reverse_within_length(v, lengths), lengths), v)


@pytest.mark.parametrize("base", [MELD, IEMOCAP], ids=["meld", "iemocap"])
def test_padding_leaves_real_utterances_unchanged(base):
    """Unlike the released code: a longer dialogue in the batch must not change the outputs."""
    torch.manual_seed(0)
    model = build_model(small(base)).eval()
    feats, speaker, mask = random_batch(2, 5, [5, 3])
    with torch.no_grad():
        alone = model(feats, speaker, mask)
        # the same dialogues padded to 9 utterances, beside a third, longer one
        extra, extra_speaker, extra_mask = random_batch(1, 9, [9], seed=1)
        pad = lambda t: nn.functional.pad(t, (0, 0, 0, 4)) if t.dim() == 3 else nn.functional.pad(t, (0, 4))
        big = {m: torch.cat([pad(feats[m]), extra[m]]) for m in feats}
        # padding filled with garbage: it must not matter either
        for m in big:
            big[m][:2, 5:] = 1e3
        out = model(big, torch.cat([pad(speaker), extra_speaker]), torch.cat([pad(mask), extra_mask]))
    for b, n in enumerate([5, 3]):
        torch.testing.assert_close(out.logits[b, :n], alone.logits[b, :n], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out.z[b, :n], alone.z[b, :n], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("modalities,multiattn", [
    *((m, True) for r in (1, 2, 3) for m in itertools.combinations(("text", "audio", "visual"), r)),
    (("text", "audio", "visual"), False)])
def test_every_modality_subset_and_the_concatenation_ablation_train(modalities, multiattn):
    torch.manual_seed(0)
    model = build_model(small(IEMOCAP, modalities=modalities, multiattn=multiattn))
    feats, speaker, mask = random_batch(3, 6, [6, 4, 1])
    out = model({m: feats[m] for m in modalities}, speaker, mask)
    assert out.logits.shape == (3, 6, 6) and out.z.shape == (3, 6, 16)
    assert set(out.fused) == set(modalities)
    out.logits[mask].sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_absent_vectors_are_not_attended_and_an_all_absent_dialogue_stays_finite():
    torch.manual_seed(0)
    model = build_model(small(MELD)).eval()
    feats, speaker, mask = random_batch(2, 4, [4, 4])
    present = {m: mask.clone() for m in feats}
    present["visual"][0, 3] = False  # one missing face (last, so the forward context cannot carry it)
    present["visual"][1] = False  # a dialogue with no face at all
    with torch.no_grad():
        out1 = model(feats, speaker, mask, present)
        changed = {m: v.clone() for m, v in feats.items()}
        changed["visual"][0, 3] += 5.0
        out2 = model(changed, speaker, mask, present)
    assert torch.isfinite(out1.logits).all()
    # text's fusion must not see the absent visual vector (visual's own stack still reads it)
    torch.testing.assert_close(out1.fused["text"], out2.fused["text"])
    assert not torch.allclose(out1.fused["visual"], out2.fused["visual"])
