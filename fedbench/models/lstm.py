"""LEAF's next-character LSTM for Shakespeare, written out so that ``torch.func.vmap`` batches it."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fedbench.models.registry import register_model
from fedbench.registry import integer, option, register


@register("model", "char_lstm")
@dataclass
class CharLSTMConfig:
    name: str = "char_lstm"
    embed: int = option(8, integer(1))
    hidden: int = option(256, integer(1))
    layers: int = option(2, integer(1))
    vocab: int | None = option(None, integer(1, nullable=True, note=" (null: num_classes)"))


class LSTMLayer(nn.Module):
    """One LSTM layer over a whole sequence, zero initial state, gates in ``nn.LSTM``'s order
    (input, forget, cell, output)::

        i, f, g, o = split(W_ih x_t + b + W_hh h_{t-1})
        c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g);  h_t = sigmoid(o) * tanh(c_t)

    One bias per layer, as LEAF's TensorFlow ``BasicLSTMCell`` has; ``nn.LSTM`` has two
    (``bias_ih + bias_hh``), so ``nn.LSTM`` with ``bias_ih = bias`` and ``bias_hh = 0`` computes the
    same thing. Written with matrix products rather than ``nn.LSTM``: under ``vmap`` every op has a
    batching rule, while ``nn.LSTM`` on CPU runs through oneDNN's ``mkldnn_rnn_layer``, which
    ``vmap`` can only loop over client by client. The input projections of all time steps are one
    matrix product; each step adds one ``addmm`` with ``W_hh``.
    """

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.hidden_size = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
        self.bias = nn.Parameter(torch.empty(4 * hidden_size))
        bound = hidden_size**-0.5  # nn.LSTM's initialisation
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(self, x: torch.Tensor, sequence: bool = True) -> torch.Tensor:
        """``(N, T, input_size)`` -> the hidden states ``(N, T, hidden_size)``, or with
        ``sequence=False`` only the last one, ``(N, hidden_size)``."""
        projected = F.linear(x, self.weight_ih, self.bias)  # (N, T, 4H), every step at once
        h = c = x.new_zeros(x.shape[0], self.hidden_size)
        w_hh = self.weight_hh.t()
        out = []
        for step in projected.unbind(1):  # unbind, not indexing: one backward op, not T zero-filled copies
            i, f, g, o = torch.addmm(step, h, w_hh).chunk(4, -1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            out.append(h)
        return torch.stack(out, 1) if sequence else h


class CharLSTM(nn.Module):
    """Embedding, stacked :class:`LSTMLayer`\\ s, and a linear layer on the last step's output."""

    def __init__(self, vocab: int, num_classes: int, embed: int, hidden: int, layers: int):
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.lstm = nn.ModuleList(LSTMLayer(embed if k == 0 else hidden, hidden) for k in range(layers))
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)
        for layer in self.lstm[:-1]:
            x = layer(x)
        return self.fc(self.lstm[-1](x, sequence=False))


@register_model("char_lstm")
def char_lstm(
    input_shape: tuple[int, ...],
    num_classes: int,
    embed: int = 8,
    hidden: int = 256,
    layers: int = 2,
    vocab: int | None = None,
) -> nn.Module:
    """LEAF's Shakespeare model (Caldas et al. 2018, ``models/shakespeare/stacked_lstm.py``; the
    architecture of McMahan et al. 2017): int64 character ids ``(N, seq_len)`` embedded in 8 dimensions,
    two LSTM layers of 256 units, and a linear layer from the last step's output to the next
    character. ``vocab`` (null: ``num_classes``, as in LEAF, where inputs and targets share the
    80-character alphabet) sets the embedding's size. 817,872 parameters with 80 characters."""
    if len(input_shape) != 1:
        raise ValueError(f"char_lstm needs (seq_len,) token-id inputs, got shape {tuple(input_shape)}")
    return CharLSTM(num_classes if vocab is None else int(vocab), num_classes, embed, hidden, layers)
