"""DialogueRNN context encoder (Majumder et al., AAAI 2019) as MultiEMO uses it (docs/method.md §2.1).

Sizes D_g = D_p = D_e = D_h = ``dim``, listener state off, "simple" attention. Per step t, for the
batch of dialogues:

1. the speaker's party state q_{s,t-1} is selected;
2. g_t = GRU_g([u_t ; q_{s,t-1}], g_{t-1});
3. c_t = Σ_{s<t} softmax_s(w·g_s) g_s (zeros at t = 1);
4. the speaker's party state becomes GRU_p([u_t ; c_t], q_{s,t-1}); listeners keep theirs;
5. e_t = GRU_e(q_{s,t}, e_{t-1});
6. dropout (``dropout_rec``) on g, q and e.

This is the released computation reorganised for speed, with the same parameters and results:
the released cell runs GRU_p for every party and then keeps only the speaker's row, runs every
padded step, and re-attends over the whole history at each step. Here GRU_p runs for the speaker
alone; dialogues are sorted by length so that step t only touches the dialogues still running
(padding costs nothing and cannot leak into real utterances); the attention pool of step 3 is
kept as a running (online) softmax, O(1) per step instead of O(t); all the DialogueRNNs of a
model (one per modality and direction, each with its own parameters) step in lockstep as one
batched recurrence (:func:`run_lockstep`); and the recurrence has a hand-written backward pass
(:class:`_Recurrence`) that computes the input halves of the gates and every weight gradient as
one large product over all utterances instead of one small product per step.
``tests/test_model.py`` holds this against a literal step-by-step implementation of the released
cell (values and gradients) and against finite differences with recurrent dropout on.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
from torch import Tensor, nn

__all__ = ["DialogueRNN", "ContextEncoder", "GRUWeights", "RecurrenceWeights", "run_lockstep", "encode_contexts",
           "reverse_within_length"]


class DialogueRNN(nn.Module):
    """One direction of DialogueRNN.

    Args:
        dim: size of the utterance vectors and of every state (D_m = D_g = D_p = D_e).
        dropout_rec: dropout on the global, party and emotion states.
    """

    def __init__(self, dim: int, dropout_rec: float = 0.0) -> None:
        super().__init__()
        self.dim = dim
        self.g_cell = nn.GRUCell(2 * dim, dim)  # [u ; q_speaker] -> g
        self.p_cell = nn.GRUCell(2 * dim, dim)  # [u ; c] -> q_speaker
        self.e_cell = nn.GRUCell(dim, dim)  # q_speaker -> e
        self.attention = nn.Linear(dim, 1, bias=False)  # scalar score of a global state
        self.dropout = nn.Dropout(dropout_rec)

    def forward(self, u: Tensor, speaker: Tensor, lengths: Tensor) -> Tensor:
        """Emotion states of every utterance.

        Shapes: B dialogues, U utterances (padded), D = dim.

        Args:
            u: ``(B, U, D)`` utterance vectors.
            speaker: ``(B, U)`` long, the party index of each utterance's speaker.
            lengths: ``(B,)`` true dialogue lengths (≥ 1).

        Returns:
            ``(B, U, D)`` emotion states e_t; zeros at padded positions.
        """
        return run_lockstep([self], u[None], speaker[None], lengths)[0]


def run_lockstep(rnns: Sequence[DialogueRNN], u: Tensor, speaker: Tensor, lengths: Tensor) -> Tensor:
    """Run R DialogueRNNs (own parameters, same batch of dialogues) side by side in one loop.

    Shapes: R recurrences, B dialogues, U utterances (padded), D model dim, P parties.

    Args:
        rnns: the R DialogueRNNs (same ``dim`` and ``dropout_rec``).
        u: ``(R, B, U, D)`` utterance vectors, one sequence per recurrence.
        speaker: ``(R, B, U)`` long party indices (a backward recurrence reads them reversed).
        lengths: ``(B,)`` true dialogue lengths, shared by all.

    Returns:
        ``(R, B, U, D)`` emotion states; zeros at padded positions.
    """
    R, B, U, D = u.shape
    p_drop, training = rnns[0].dropout.p, rnns[0].training
    if any(r.dropout.p != p_drop or r.dim != D for r in rnns):
        raise ValueError("run_lockstep needs DialogueRNNs of one size and one dropout_rec")
    layout = _Layout(speaker, lengths)
    params = RecurrenceWeights.of(rnns)
    u_tm = u.reshape(R, B * U, D).index_select(1, layout.index)  # (R, N, D) time-major
    e_tm = _Recurrence.apply(layout, p_drop if training else 0.0, u_tm, *params.flatten())  # (R, N, D)
    out = e_tm.new_zeros(R, B * U, D).index_copy_(1, layout.index, e_tm)
    return out.view(R, B, U, D)


class GRUWeights(NamedTuple):
    """One GRU cell's parameters, stacked over R recurrences (gate order r, z, n)."""

    weight_ih: Tensor  # (R, 3D, in)
    bias_ih: Tensor  # (R, 3D)
    weight_hh: Tensor  # (R, 3D, D)
    bias_hh: Tensor  # (R, 3D)


class RecurrenceWeights(NamedTuple):
    """The parameters of R DialogueRNNs, stacked: the recurrence's named input.

    ``torch.autograd.Function.apply`` only tracks tensors passed one by one, so they travel as
    :meth:`flatten` and are named again with :meth:`unflatten`; gradients come back in the same
    order.
    """

    score: Tensor  # (R, 1, D) the attention pool's scoring vector w
    g: GRUWeights  # GRU_g: [u ; q_speaker] -> g
    p: GRUWeights  # GRU_p: [u ; c] -> q_speaker
    e: GRUWeights  # GRU_e: q_speaker -> e

    @classmethod
    def of(cls, rnns: Sequence["DialogueRNN"]) -> "RecurrenceWeights":
        def cell(name: str) -> GRUWeights:
            return GRUWeights(*(torch.stack([getattr(getattr(r, name), f) for r in rnns]) for f in GRUWeights._fields))
        return cls(torch.stack([r.attention.weight for r in rnns]), cell("g_cell"), cell("p_cell"), cell("e_cell"))

    def flatten(self) -> tuple[Tensor, ...]:
        return (self.score, *self.g, *self.p, *self.e)

    @classmethod
    def unflatten(cls, flat: Sequence[Tensor]) -> "RecurrenceWeights":
        return cls(flat[0], GRUWeights(*flat[1:5]), GRUWeights(*flat[5:9]), GRUWeights(*flat[9:13]))


class RecurrenceStates(NamedTuple):
    """Every row's states, kept by the forward pass for the backward pass; each ``(R, N, ·)`` in
    time-major row order."""

    G: Tensor  # global states g_t
    Qs: Tensor  # the speaker's party state before the step, q_{s,t-1}
    Qn: Tensor  # the speaker's party state after it, q_{s,t}
    E: Tensor  # emotion states e_t
    C: Tensor  # attention pools c_t
    A: Tensor  # (R, N, 1) scores a_t = w·g_t
    L: Tensor  # (R, N, 1) l_t = log Σ_{s≤t} exp(a_s)


class _Layout:
    """Where each real utterance sits in the *time-major* order the recurrence steps through.

    Dialogues are sorted by length (longest first), so the dialogues still running at step t
    are a prefix of ``active[t]`` of them; the rows of step t are ``offsets[t] : offsets[t] +
    active[t]`` and, for t > 0, the same dialogues' rows of step t - 1 start at ``offsets[t-1]``.
    """

    def __init__(self, speaker: Tensor, lengths: Tensor) -> None:
        R, B, U = speaker.shape
        device = speaker.device
        order = torch.argsort(lengths, descending=True, stable=True)  # (B,)
        sorted_lengths = lengths[order]
        T = int(sorted_lengths[0].item())
        running = sorted_lengths[None, :] > torch.arange(T, device=device)[:, None]  # (T, B)
        step, rank = running.nonzero(as_tuple=True)  # (N,) each, step-major
        self.active = running.sum(1).tolist()  # T ints
        self.offsets = [0]
        for k in self.active:
            self.offsets.append(self.offsets[-1] + k)
        self.index = order[rank] * U + step  # (N,) flat (B·U) position of each time-major row
        self.num_parties = int(speaker.max().item()) + 1
        # each row's party-state slot, (sorted dialogue, speaker) flattened: (R, N)
        self.seat = rank * self.num_parties + speaker.reshape(R, B * U).index_select(1, self.index)
        self.batch = B
        offsets = torch.tensor(self.offsets, device=device)
        # row of the same dialogue one step earlier, -1 at its first step
        self.previous = torch.where(step > 0, offsets[(step - 1).clamp(min=0)] + rank, -1)  # (N,)

    def rows(self, t: int) -> slice:
        return slice(self.offsets[t], self.offsets[t] + self.active[t])

    def previous_rows(self, t: int) -> slice:
        return slice(self.offsets[t - 1], self.offsets[t - 1] + self.active[t])


def _gates(gi: Tensor, gh: Tensor, h: Tensor | None, out: Tensor) -> Tensor:
    """One GRU update, the arithmetic of ``torch.nn.GRUCell`` (gate order r, z, n).

    ``gi`` and ``gh`` ``(R, k, 3D)``: the input and hidden pre-activations (``gi`` is scratch and is
    overwritten with r, z, n, which it returns for the backward pass); ``h`` ``(R, k, D)`` the
    previous state (None: zeros). Writes the new state into ``out`` ``(R, k, D)``.
    """
    D = out.shape[-1]
    rz = torch.sigmoid_(gi[..., :2 * D].add_(gh[..., :2 * D]))
    r, z = rz[..., :D], rz[..., D:]
    n = torch.tanh_(gi[..., 2 * D:].addcmul_(r, gh[..., 2 * D:]))
    if h is None:
        torch.addcmul(n, z, n, value=-1, out=out)  # (1 - z) n
    else:
        torch.lerp(n, h, z, out=out)  # (1 - z) n + z h
    return gi


def _gates_backward(dh: Tensor, h: Tensor | None, acts: Tensor, gh: Tensor, dgi: Tensor,
                    dgh: Tensor) -> Tensor | None:
    """Backward of :func:`_gates`: from the gradient ``dh`` of the new state, writes the gradients of
    the input and hidden pre-activations into ``dgi`` and ``dgh`` ``(R, k, 3D)`` and returns the part
    of the previous state's gradient that does not pass through ``W_hh`` (None if h is None)."""
    D = dh.shape[-1]
    r, z, n = acts[..., :D], acts[..., D:2 * D], acts[..., 2 * D:]
    d_n = torch.ops.aten.tanh_backward.grad_input(torch.addcmul(dh, dh, z, value=-1), n,
                                                  grad_input=dgi[..., 2 * D:])
    torch.mul(d_n, gh[..., 2 * D:], out=dgi[..., :D])  # into r
    if h is None:
        torch.mul(dh, n, out=dgi[..., D:2 * D]).neg_()  # into z
    else:
        torch.mul(dh, h - n, out=dgi[..., D:2 * D])
    torch.ops.aten.sigmoid_backward.grad_input(dgi[..., :2 * D], acts[..., :2 * D], grad_input=dgi[..., :2 * D])
    dgh[..., :2 * D] = dgi[..., :2 * D]
    torch.mul(d_n, r, out=dgh[..., 2 * D:])
    return None if h is None else dh * z


class _Recurrence(torch.autograd.Function):
    """R DialogueRNN recurrences over time-major rows, with a hand-written backward pass.

    Forward keeps every step's states and gate activations; backward walks the steps in reverse,
    carrying the gradients of the global, party and emotion states and of the attention pool,
    and leaves every weight gradient to one large product over all rows at the end (instead of
    one small product per step). The attention pool's backward is carried as two running sums
    rescaled by ``exp(l_{t-1} - l_t)`` ≤ 1 (l_t the log-sum-exp of the scores so far), so it
    never overflows. States go straight into ``(R, N, ·)`` row buffers (this is memory-bound:
    nothing is copied twice). ``tests/test_model.py`` holds values and gradients to the released
    cell.
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)
    def forward(ctx, layout: _Layout, p_drop: float, u: Tensor, *flat: Tensor) -> Tensor:
        params = RecurrenceWeights.unflatten(flat)  # (the flattened RecurrenceWeights)
        score_w = params.score
        R, N, D = u.shape
        B, P = layout.batch, layout.num_parties
        masks = None
        if p_drop > 0:  # dropout_rec on g, q and e, drawn once for every row
            masks = [torch.empty_like(u).bernoulli_(1 - p_drop).div_(1 - p_drop) for _ in range(3)]
        # the utterance halves of GRU_g's and GRU_p's input maps, for every row at once
        g_cell, p_cell, e_cell = params.g, params.p, params.e
        gi_g = torch.baddbmm(g_cell.bias_ih.unsqueeze(1), u, g_cell.weight_ih[:, :, :D].transpose(1, 2))  # (R, N, 3D)
        gi_p = torch.baddbmm(p_cell.bias_ih.unsqueeze(1), u, p_cell.weight_ih[:, :, :D].transpose(1, 2))  # (R, N, 3D)
        w_gq, w_pc = g_cell.weight_ih[:, :, D:].transpose(1, 2), p_cell.weight_ih[:, :, D:].transpose(1, 2)  # (R, D, 3D)
        w_gh, w_ph, w_eh = (c.weight_hh.transpose(1, 2) for c in (g_cell, p_cell, e_cell))  # (R, D, 3D)
        w_ei = e_cell.weight_ih.transpose(1, 2)  # (R, D, 3D)
        b_gh, b_ph, b_ei, b_eh = (b.unsqueeze(1) for b in (g_cell.bias_hh, p_cell.bias_hh, e_cell.bias_ih,
                                                            e_cell.bias_hh))  # (R, 1, 3D)
        party = u.new_zeros(R, B * P, D)  # q: every party's state, dialogues in sorted order
        pool_num, pool_den = u.new_zeros(R, B, D), u.new_zeros(R, B, 1)
        pool_max = u.new_full((R, B, 1), float("-inf"))
        # every row's states and inputs, in time-major row order
        G, Qs, Qn, E, C = (u.new_empty(R, N, D) for _ in range(5))
        A, L = u.new_empty(R, N, 1), u.new_empty(R, N, 1)  # a_t = w·g_t, l_t = log Σ_{s≤t} exp(a_s)
        acts = {cell: [] for cell in "gpe"}  # per step: r, z, n
        hidden = {cell: [] for cell in "gpe"}  # per step: hidden pre-activations
        for t in range(len(layout.active)):
            k, rows = layout.active[t], layout.rows(t)
            prev = None if t == 0 else layout.previous_rows(t)
            seat = layout.seat[:, rows, None].expand(R, k, D)  # (R, k, D) the speaker's row in party
            q_s = torch.gather(party, 1, seat, out=Qs[:, rows])  # the speaker's state q_{s,t-1}
            # g_t = GRU_g([u_t ; q_s], g_{t-1})
            g_prev = None if prev is None else G[:, prev]
            gh = b_gh.expand(R, k, 3 * D) if prev is None else torch.baddbmm(b_gh, g_prev, w_gh)
            acts["g"].append(_gates(torch.baddbmm(gi_g[:, rows], q_s, w_gq), gh, g_prev, G[:, rows]))
            g = G[:, rows]
            if masks is not None:
                g.mul_(masks[0][:, rows])
            # c_t: softmax-weighted pool of g_1 .. g_{t-1}, kept as running sums
            c = C[:, rows]
            if prev is None:
                c.zero_()
            else:
                torch.div(pool_num[:, :k], pool_den[:, :k], out=c)
            # q_{s,t} = GRU_p([u_t ; c_t], q_{s,t-1}); listeners keep theirs
            gi = gi_p[:, rows] if prev is None else torch.baddbmm(gi_p[:, rows], c, w_pc)
            ph = torch.baddbmm(b_ph, q_s, w_ph)
            acts["p"].append(_gates(gi, ph, q_s, Qn[:, rows]))
            q_new = Qn[:, rows]
            if masks is not None:
                q_new.mul_(masks[1][:, rows])
            party.scatter_(1, seat, q_new)
            # e_t = GRU_e(q_{s,t}, e_{t-1})
            e_prev = None if prev is None else E[:, prev]
            eh = b_eh.expand(R, k, 3 * D) if prev is None else torch.baddbmm(b_eh, e_prev, w_eh)
            acts["e"].append(_gates(torch.baddbmm(b_ei, q_new, w_ei), eh, e_prev, E[:, rows]))
            if masks is not None:
                E[:, rows].mul_(masks[2][:, rows])
            hidden["g"].append(gh)
            hidden["p"].append(ph)
            hidden["e"].append(eh)
            # fold g_t into the running softmax
            a = torch.bmm(g, score_w.transpose(1, 2))  # (R, k, 1)
            A[:, rows] = a
            peak = pool_max[:, :k]
            new_peak = torch.maximum(peak, a)
            keep, add = (peak - new_peak).exp_(), (a - new_peak).exp_()
            pool_num[:, :k].mul_(keep).addcmul_(add, g)
            den = pool_den[:, :k].mul_(keep).add_(add)
            peak.copy_(new_peak)
            torch.add(torch.log(den), new_peak, out=L[:, rows])
        ctx.layout, ctx.masks, ctx.acts, ctx.hidden = layout, masks, acts, hidden
        ctx.save_for_backward(u, *params.flatten(), *RecurrenceStates(G, Qs, Qn, E, C, A, L))
        return E

    @staticmethod
    @torch.autograd.function.once_differentiable
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, dE: Tensor):
        u, *saved = ctx.saved_tensors
        params = RecurrenceWeights.unflatten(saved[:13])
        score_w = params.score
        G, Qs, Qn, E, C, A, L = RecurrenceStates(*saved[13:])
        layout, masks, acts, hidden = ctx.layout, ctx.masks, ctx.acts, ctx.hidden
        R, N, D = u.shape
        B, P = layout.batch, layout.num_parties
        dgi = {cell: u.new_empty(R, N, 3 * D) for cell in "gpe"}  # gradients of every row's pre-activations
        dgh = {cell: u.new_empty(R, N, 3 * D) for cell in "gpe"}
        kappa = u.new_empty(R, N, 1)  # gradient of every score a_t
        d_party = u.new_zeros(R, B * P, D)  # gradient of each party's latest state
        dg_next = de_next = None  # from step t+1 to step t, (R, k_{t+1}, D)
        # attention pool: V = Σ_{t'>t} exp(l_t - l_{t'-1}) dc_{t'} and W, the same over dc_{t'}·c_{t'}
        pool_v, pool_w = u.new_zeros(R, B, D), u.new_zeros(R, B, 1)

        def carried(grad: Tensor, nxt: Tensor | None) -> Tensor:  # grad (R, k, D) + the next step's
            grad = grad.clone()
            if nxt is not None:
                grad[:, :nxt.shape[1]] += nxt
            return grad

        for t in reversed(range(len(layout.active))):
            k, rows = layout.active[t], layout.rows(t)
            prev = None if t == 0 else layout.previous_rows(t)
            seat = layout.seat[:, rows, None].expand(R, k, D)
            # e_t = GRU_e(q_{s,t}, e_{t-1})
            de = carried(dE[:, rows], de_next)
            if masks is not None:
                de.mul_(masks[2][:, rows])
            direct = _gates_backward(de, None if prev is None else E[:, prev], acts["e"][t], hidden["e"][t],
                                     dgi["e"][:, rows], dgh["e"][:, rows])
            de_next = None if prev is None else torch.baddbmm(direct, dgh["e"][:, rows], params.e.weight_hh)
            # q_{s,t}: read by e_t and by the speaker's next turn (gradient waiting in d_party)
            dq = torch.baddbmm(torch.gather(d_party, 1, seat), dgi["e"][:, rows], params.e.weight_ih)
            if masks is not None:
                dq.mul_(masks[1][:, rows])
            direct = _gates_backward(dq, Qs[:, rows], acts["p"][t], hidden["p"][t], dgi["p"][:, rows],
                                     dgh["p"][:, rows])
            dq_s = torch.baddbmm(direct, dgh["p"][:, rows], params.p.weight_hh)  # (R, k, D)
            # g_t: read by g_{t+1} and, through the pool, by every later c
            rho = torch.sub(A[:, rows], L[:, rows]).exp_()  # (R, k, 1) = exp(a_t - l_t)
            v, w = pool_v[:, :k], pool_w[:, :k]
            coef = torch.mul(rho, torch.linalg.vecdot(v, G[:, rows]).unsqueeze(-1).sub_(w), out=kappa[:, rows])
            dg = carried(torch.addcmul(coef * score_w, rho, v), dg_next)
            if prev is not None:  # c_t = Σ_{s<t} softmax(a)_s g_s reads g_1 .. g_{t-1}
                dc = torch.bmm(dgi["p"][:, rows], params.p.weight_ih[:, :, D:])  # (R, k, D)
                shrink = torch.sub(L[:, prev], L[:, rows]).exp_()  # exp(l_{t-1} - l_t)
                v.mul_(shrink).add_(dc)
                w.mul_(shrink).add_(torch.linalg.vecdot(dc, C[:, rows]).unsqueeze(-1))
            if masks is not None:
                dg.mul_(masks[0][:, rows])
            direct = _gates_backward(dg, None if prev is None else G[:, prev], acts["g"][t], hidden["g"][t],
                                     dgi["g"][:, rows], dgh["g"][:, rows])
            dg_next = None if prev is None else torch.baddbmm(direct, dgh["g"][:, rows], params.g.weight_hh)
            dq_s.baddbmm_(dgi["g"][:, rows], params.g.weight_ih[:, :, D:])
            # the state the speaker held before step t
            d_party.scatter_(1, seat, dq_s)
        # every weight gradient as one product over all rows
        later = slice(layout.active[0], N)  # rows after step 0 (g_{t-1} = e_{t-1} = 0 at step 0)
        previous = layout.previous[later]  # their rows one step earlier
        T_ = lambda x: x.transpose(1, 2)
        grads_u = (torch.bmm(dgi["g"], params.g.weight_ih[:, :, :D]).baddbmm_(dgi["p"], params.p.weight_ih[:, :, :D])
                   if ctx.needs_input_grad[2] else None)
        grads = RecurrenceWeights(
            score=torch.bmm(T_(kappa), G),
            g=GRUWeights(torch.cat([torch.bmm(T_(dgi["g"]), u), torch.bmm(T_(dgi["g"]), Qs)], dim=2),
                         dgi["g"].sum(1), torch.bmm(T_(dgh["g"][:, later]), G.index_select(1, previous)),
                         dgh["g"].sum(1)),
            p=GRUWeights(torch.cat([torch.bmm(T_(dgi["p"]), u), torch.bmm(T_(dgi["p"]), C)], dim=2),
                         dgi["p"].sum(1), torch.bmm(T_(dgh["p"]), Qs), dgh["p"].sum(1)),
            e=GRUWeights(torch.bmm(T_(dgi["e"]), Qn), dgi["e"].sum(1),
                         torch.bmm(T_(dgh["e"][:, later]), E.index_select(1, previous)), dgh["e"].sum(1)))
        return (None, None, grads_u, *grads.flatten())


def reverse_within_length(x: Tensor, lengths: Tensor) -> Tensor:
    """Reverse each sequence of ``x`` ``(B, U, ...)`` within its true length; padding stays put.

    >>> x = torch.tensor([[1, 2, 3], [4, 5, 0]])
    >>> reverse_within_length(x, torch.tensor([3, 2])).tolist()
    [[3, 2, 1], [5, 4, 0]]
    """
    B, U = x.shape[:2]
    t = torch.arange(U, device=x.device)[None, :]  # (1, U)
    index = torch.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)  # (B, U)
    index = index.view(B, U, *([1] * (x.dim() - 2))).expand_as(x)
    return torch.gather(x, 1, index)


class ContextEncoder(nn.Module):
    """DialogueRNN one way (MELD) or both ways (IEMOCAP), with the output layer of docs/method.md §2.1.

    Forward only: ``ReLU(Dropout(e))``. Both ways: the backward DialogueRNN reads each dialogue
    reversed within its true length, and ``ReLU(Dropout(Linear([e_fwd ; e_bwd])))``.

    Args:
        dim: model dimension.
        bidirectional: run the backward direction too.
        dropout: dropout on the output.
        dropout_rec: dropout inside DialogueRNN and on its emotion states.
    """

    def __init__(self, dim: int, bidirectional: bool, dropout: float = 0.0,
                 dropout_rec: float = 0.0) -> None:
        super().__init__()
        self.forward_rnn = DialogueRNN(dim, dropout_rec)
        self.backward_rnn = DialogueRNN(dim, dropout_rec) if bidirectional else None
        self.linear = nn.Linear(2 * dim, dim) if bidirectional else None
        self.dropout_rec = nn.Dropout(dropout_rec)
        self.dropout = nn.Dropout(dropout)

    def directions(self, u: Tensor, speaker: Tensor, lengths: Tensor) -> list[tuple[DialogueRNN, Tensor, Tensor]]:
        """The recurrences to run: (DialogueRNN, its input ``(B, U, D)``, its speakers ``(B, U)``)."""
        runs = [(self.forward_rnn, u, speaker)]
        if self.backward_rnn is not None:
            runs.append((self.backward_rnn, reverse_within_length(u, lengths),
                         reverse_within_length(speaker, lengths)))
        return runs

    def combine(self, states: list[Tensor], lengths: Tensor) -> Tensor:
        """The output layer over the emotion states of :meth:`directions`' recurrences → ``(B, U, D)``."""
        e_fwd = self.dropout_rec(states[0])  # (B, U, D)
        if self.backward_rnn is None:
            return torch.relu(self.dropout(e_fwd))
        e_bwd = self.dropout_rec(reverse_within_length(states[1], lengths))  # (B, U, D)
        assert self.linear is not None
        return torch.relu(self.dropout(self.linear(torch.cat([e_fwd, e_bwd], dim=-1))))  # (B, U, D)

    def forward(self, u: Tensor, speaker: Tensor, lengths: Tensor) -> Tensor:
        """``u`` ``(B, U, D)``, ``speaker`` ``(B, U)`` party indices, ``lengths`` ``(B,)`` → ``(B, U, D)``."""
        return encode_contexts({"x": self}, {"x": u}, speaker, lengths)["x"]

    @staticmethod
    def encode_many(encoders: dict[str, "ContextEncoder"], inputs: dict[str, Tensor], speaker: Tensor,
                    lengths: Tensor) -> dict[str, Tensor]:
        """Several encoders (one per modality) at once, all recurrences in lockstep
        (:func:`encode_contexts`); the model runs its DialogueRNNs through this."""
        return encode_contexts(encoders, inputs, speaker, lengths)


def encode_contexts(encoders: dict[str, ContextEncoder], inputs: dict[str, Tensor], speaker: Tensor,
                    lengths: Tensor) -> dict[str, Tensor]:
    """Run several context encoders (one per modality) with all their recurrences in lockstep.

    Args:
        encoders: name → encoder.
        inputs: name → ``(B, U, D)`` utterance vectors.
        speaker: ``(B, U)`` party indices, shared.
        lengths: ``(B,)`` true dialogue lengths.

    Returns:
        name → ``(B, U, D)`` context-encoded sequence.
    """
    runs = {name: enc.directions(inputs[name], speaker, lengths) for name, enc in encoders.items()}
    flat = [run for name in encoders for run in runs[name]]
    states = run_lockstep([r for r, _, _ in flat], torch.stack([x for _, x, _ in flat]),
                          torch.stack([s for _, _, s in flat]), lengths).unbind(0)  # R × (B, U, D)
    out, i = {}, 0
    for name, enc in encoders.items():
        n = len(runs[name])
        out[name] = enc.combine(list(states[i:i + n]), lengths)
        i += n
    return out
