"""DialogueRNN context encoder (Majumder et al., AAAI 2019) as MultiEMO uses it (PAPER.md §2.1).

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
kept as a running (online) softmax, O(1) per step instead of O(t); and all the DialogueRNNs of a
model (one per modality and direction, each with its own parameters) step in lockstep as one
batched recurrence (:func:`run_lockstep`), so each step is a few batched matrix products instead
of many small ones. ``tests/test_model.py`` holds this against a literal step-by-step
implementation of the released cell, values and gradients.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["DialogueRNN", "ContextEncoder", "run_lockstep", "encode_contexts", "reverse_within_length"]


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
    drop = (lambda x: F.dropout(x, p_drop, training)) if p_drop > 0 else (lambda x: x)
    num_parties = int(speaker.max().item()) + 1
    order = torch.argsort(lengths, descending=True, stable=True)
    u, speaker = u[:, order], speaker[:, order]
    # active[t]: number of dialogues (a prefix, after sorting) that have an utterance t
    active = (lengths[order][None, :] > torch.arange(U, device=u.device)[:, None]).sum(1).tolist()

    def stacked(get) -> Tensor:  # one (R, ...) tensor of a parameter of every recurrence
        return torch.stack([get(r) for r in rnns])

    cells = {}
    for name in ("g_cell", "p_cell", "e_cell"):
        cells[name] = (stacked(lambda r: getattr(r, name).weight_ih).transpose(1, 2),  # (R, in, 3D)
                       stacked(lambda r: getattr(r, name).bias_ih).unsqueeze(1),  # (R, 1, 3D)
                       stacked(lambda r: getattr(r, name).weight_hh).transpose(1, 2),  # (R, D, 3D)
                       stacked(lambda r: getattr(r, name).bias_hh).unsqueeze(1))  # (R, 1, 3D)
    score_w = stacked(lambda r: r.attention.weight).transpose(1, 2)  # (R, D, 1)

    # one tensor per step: slicing (R, B, U, D) inside the loop would make every step's backward
    # write a gradient the size of the whole batch
    u_steps = u.unbind(dim=2)  # U × (R, B, D)
    q = u.new_zeros(R, B, num_parties, D)  # party states
    g = u.new_zeros(R, B, D)  # previous global state
    e = u.new_zeros(R, B, D)  # previous emotion state
    pool_num = u.new_zeros(R, B, D)  # Σ exp(a_s - m) g_s over past global states
    pool_den = u.new_zeros(R, B, 1)  # Σ exp(a_s - m)
    pool_max = u.new_full((R, B, 1), float("-inf"))  # m, the running max score
    which = torch.arange(R, device=u.device)[:, None]  # (R, 1)
    outputs = []
    for t in range(U):
        k = active[t]
        if k == 0:
            break
        # dialogues that ended drop out of every state: they are never read again
        q, g, e = q[:, :k], g[:, :k], e[:, :k]
        pool_num, pool_den, pool_max = pool_num[:, :k], pool_den[:, :k], pool_max[:, :k]
        u_t, s_t = u_steps[t][:, :k], speaker[:, :k, t]  # (R, k, D), (R, k)
        rows = torch.arange(k, device=u.device)[None, :]  # (1, k)
        q_s = q[which, rows, s_t]  # (R, k, D) speaker's party state q_{s,t-1}
        g = drop(_gru(torch.cat([u_t, q_s], dim=-1), g, *cells["g_cell"]))  # (R, k, D)
        c = torch.zeros_like(g) if t == 0 else pool_num / pool_den  # (R, k, D) pool over g_1..g_{t-1}
        q_new = drop(_gru(torch.cat([u_t, c], dim=-1), q_s, *cells["p_cell"]))  # (R, k, D)
        q = q.index_put((which, rows, s_t), q_new)  # (R, k, P, D) the speaker's state replaced
        e = drop(_gru(q_new, e, *cells["e_cell"]))  # (R, k, D)
        outputs.append(F.pad(e, (0, 0, 0, B - k)))  # (R, B, D)
        # fold g_t into the running softmax for the steps after t
        score = torch.bmm(g, score_w)  # (R, k, 1)
        new_max = torch.maximum(pool_max, score)
        keep, add = torch.exp(pool_max - new_max), torch.exp(score - new_max)
        pool_num = pool_num * keep + add * g
        pool_den = pool_den * keep + add
        pool_max = new_max
    out = torch.stack(outputs, dim=2)  # (R, B, T, D) with T = max length
    out = F.pad(out, (0, 0, 0, U - out.shape[2]))  # (R, B, U, D)
    return out[:, torch.argsort(order)]  # back to the caller's order


def _gru(x: Tensor, h: Tensor, w_ih: Tensor, b_ih: Tensor, w_hh: Tensor, b_hh: Tensor) -> Tensor:
    """R GRU cells at once, the arithmetic of ``torch.nn.GRUCell`` (gate order r, z, n).

    ``x`` ``(R, k, in)``, ``h`` ``(R, k, D)``, weights stacked and transposed → ``(R, k, D)``.
    """
    gates_i = torch.baddbmm(b_ih, x, w_ih)  # (R, k, 3D)
    gates_h = torch.baddbmm(b_hh, h, w_hh)  # (R, k, 3D)
    i_r, i_z, i_n = gates_i.chunk(3, dim=-1)
    h_r, h_z, h_n = gates_h.chunk(3, dim=-1)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return n + z * (h - n)  # (1 - z) n + z h


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
    """DialogueRNN one way (MELD) or both ways (IEMOCAP), with the output layer of PAPER.md §2.1.

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
