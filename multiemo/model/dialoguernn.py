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
(padding costs nothing and cannot leak into real utterances); and the attention pool of step 3 is
kept as a running (online) softmax, O(1) per step instead of O(t). ``tests/test_model.py`` holds
this against a literal step-by-step implementation of the released cell.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["DialogueRNN", "ContextEncoder", "reverse_within_length"]


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

        Shapes: B dialogues, U utterances (padded), D = dim, P parties.

        Args:
            u: ``(B, U, D)`` utterance vectors.
            speaker: ``(B, U)`` long, the party index of each utterance's speaker.
            lengths: ``(B,)`` true dialogue lengths (≥ 1).

        Returns:
            ``(B, U, D)`` emotion states e_t; zeros at padded positions.
        """
        B, U, D = u.shape
        num_parties = int(speaker.max().item()) + 1
        order = torch.argsort(lengths, descending=True, stable=True)
        u, speaker = u[order], speaker[order]
        # active[t]: number of dialogues (a prefix, after sorting) that have an utterance t
        active = (lengths[order][None, :] > torch.arange(U, device=u.device)[:, None]).sum(1).tolist()

        # one tensor per step: slicing (B, U, D) inside the loop would make every step's backward
        # write a gradient the size of the whole batch
        u_steps = u.unbind(dim=1)  # U × (B, D)
        q = u.new_zeros(B, num_parties, D)  # party states
        g = u.new_zeros(B, D)  # previous global state
        e = u.new_zeros(B, D)  # previous emotion state
        pool_num = u.new_zeros(B, D)  # Σ exp(a_s - m) g_s over past global states
        pool_den = u.new_zeros(B, 1)  # Σ exp(a_s - m)
        pool_max = u.new_full((B, 1), float("-inf"))  # m, the running max score
        outputs = []
        for t in range(U):
            k = active[t]
            if k == 0:
                break
            # dialogues that ended drop out of every state: they are never read again
            q, g, e = q[:k], g[:k], e[:k]
            pool_num, pool_den, pool_max = pool_num[:k], pool_den[:k], pool_max[:k]
            u_t, s_t = u_steps[t][:k], speaker[:k, t]  # (k, D), (k,)
            rows = torch.arange(k, device=u.device)
            q_s = q[rows, s_t]  # (k, D) speaker's party state q_{s,t-1}
            g = self.dropout(self.g_cell(torch.cat([u_t, q_s], dim=1), g))  # (k, D)
            if t == 0:
                c = torch.zeros_like(g)
            else:
                c = pool_num / pool_den  # (k, D) attention pool over g_1..g_{t-1}
            q_new = self.dropout(self.p_cell(torch.cat([u_t, c], dim=1), q_s))  # (k, D)
            q = q.index_put((rows, s_t), q_new)  # (k, P, D) the speaker's state replaced
            e = self.dropout(self.e_cell(q_new, e))  # (k, D)
            outputs.append(nn.functional.pad(e, (0, 0, 0, B - k)))  # (B, D)
            # fold g_t into the running softmax for the steps after t
            score = self.attention(g)  # (k, 1)
            new_max = torch.maximum(pool_max, score)
            keep, add = torch.exp(pool_max - new_max), torch.exp(score - new_max)
            pool_num = pool_num * keep + add * g
            pool_den = pool_den * keep + add
            pool_max = new_max
        out = torch.stack(outputs, dim=1)  # (B, T, D) with T = max length
        out = nn.functional.pad(out, (0, 0, 0, U - out.shape[1]))  # (B, U, D)
        return out[torch.argsort(order)]  # back to the caller's order


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

    def forward(self, u: Tensor, speaker: Tensor, lengths: Tensor) -> Tensor:
        """``u`` ``(B, U, D)``, ``speaker`` ``(B, U)`` party indices, ``lengths`` ``(B,)`` → ``(B, U, D)``."""
        e_fwd = self.dropout_rec(self.forward_rnn(u, speaker, lengths))  # (B, U, D)
        if self.backward_rnn is None:
            return torch.relu(self.dropout(e_fwd))
        e_bwd = self.backward_rnn(reverse_within_length(u, lengths),
                                  reverse_within_length(speaker, lengths), lengths)
        e_bwd = self.dropout_rec(reverse_within_length(e_bwd, lengths))  # (B, U, D)
        assert self.linear is not None
        return torch.relu(self.dropout(self.linear(torch.cat([e_fwd, e_bwd], dim=-1))))  # (B, U, D)
