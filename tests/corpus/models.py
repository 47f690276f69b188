"""The corpus's model families beyond the scenario suite's MLPs and CNNs.

A residual MLP and a residual CNN (BatchNorm), GRU/LSTM sequence models (classifier,
character-level language model, regressor), a small transformer with hand-written
pre-norm (or post-norm) blocks: LayerNorm, ``nn.MultiheadAttention``, a GELU MLP.
(``nn.TransformerEncoder`` is avoided: with ``norm_first=True`` it warns about nested
tensors, and the suite runs with warnings as errors.) And an MLP and a CNN written the
other common way: activations called in ``forward`` (``F.relu``, ``torch.relu``,
``F.max_pool2d``), no activation modules at all.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResidualMLP(nn.Module):
    """Linear stem, ``blocks`` x (x + Linear(ReLU(BatchNorm(Linear(x))))), a Linear head."""

    def __init__(self, inputs: int, outputs: int, *, width: int = 96, blocks: int = 3) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Flatten(), nn.Linear(inputs, width), nn.ReLU())
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.Linear(width, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Linear(width, width)
            )
            for _ in range(blocks)
        )
        self.head = nn.Linear(width, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        for block in self.blocks:
            h = torch.relu(h + block(h))
        return self.head(h)


class BasicBlock(nn.Module):
    """He et al.'s basic block: conv-BN-ReLU-conv-BN plus the identity, then ReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu2(x + self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x))))))


class ResNet(nn.Module):
    """A two-block ResNet for 8x8 images: stem conv, two basic blocks, pooling, head."""

    def __init__(self, channels: int = 16, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU()
        )
        self.layer1 = BasicBlock(channels)
        self.layer2 = BasicBlock(channels)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(channels, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.layer2(self.layer1(self.stem(x)))))


class SequenceClassifier(nn.Module):
    """A GRU or LSTM over N x T x F; the last time step's state -> a Linear head."""

    def __init__(
        self, cell: str, features: int, classes: int, *, hidden: int = 64, layers: int = 1
    ) -> None:
        super().__init__()
        rnn = nn.GRU if cell == "gru" else nn.LSTM
        self.rnn = rnn(features, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


class CharModel(nn.Module):
    """Character-level language model: Embedding -> GRU/LSTM -> per-position logits."""

    def __init__(self, cell: str, vocab: int, *, embed: int = 32, hidden: int = 96) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        rnn = nn.GRU if cell == "gru" else nn.LSTM
        self.rnn = rnn(embed, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.embed(x))
        return self.head(out)


class SequenceRegressor(nn.Module):
    """An LSTM over N x T x 1 and a Linear read-out of the last state: one number."""

    def __init__(self, hidden: int = 32) -> None:
        super().__init__()
        self.rnn = nn.LSTM(1, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(out[:, -1]).squeeze(-1)


class Block(nn.Module):
    """A transformer block: pre-norm x + attn(LN(x)), x + MLP(LN(x)); or post-norm
    LN(x + attn(x)), LN(x + MLP(x)) as in Vaswani et al."""

    def __init__(self, dim: int, heads: int, *, pre_norm: bool = True, dropout: float = 0.0):
        super().__init__()
        self.pre_norm = pre_norm
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim), nn.Dropout(dropout)
        )

    def _attend(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return self.attn(x, x, x, attn_mask=mask, need_weights=False)[0]

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.pre_norm:
            x = x + self._attend(self.norm1(x), mask)
            return x + self.mlp(self.norm2(x))
        x = self.norm1(x + self._attend(x, mask))
        return self.norm2(x + self.mlp(x))


class Transformer(nn.Module):
    """A small transformer. ``vocab``: token ids in, per-position logits out with a causal
    mask (a language model); else N x T x F features in (a linear embedding), and the
    mean over positions -> ``outputs`` logits (a classifier)."""

    def __init__(
        self,
        outputs: int,
        *,
        features: int = 8,
        vocab: int | None = None,
        length: int = 32,
        dim: int = 48,
        heads: int = 4,
        blocks: int = 1,
        pre_norm: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.causal = vocab is not None
        self.embed = nn.Embedding(vocab, dim) if vocab is not None else nn.Linear(features, dim)
        self.pos = nn.Parameter(0.02 * torch.randn(length, dim))
        self.blocks = nn.ModuleList(
            Block(dim, heads, pre_norm=pre_norm, dropout=dropout) for _ in range(blocks)
        )
        self.norm = nn.LayerNorm(dim) if pre_norm else nn.Identity()
        self.head = nn.Linear(dim, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        t = h.shape[1]
        h = h + self.pos[:t]
        mask = None
        if self.causal:
            mask = torch.triu(torch.full((t, t), float("-inf"), device=h.device), diagonal=1)
        for block in self.blocks:
            h = block(h, mask)
        h = self.norm(h)
        return self.head(h if self.causal else h.mean(1))


class FunctionalMLP(nn.Module):
    """fc1 -> F.relu -> fc2 -> F.relu -> head: the ReLUs are function calls, not modules."""

    def __init__(self, inputs: int = 64, hidden: int = 128, outputs: int = 10) -> None:
        super().__init__()
        self.fc1 = nn.Linear(inputs, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.head = nn.Linear(hidden, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.fc1(x.flatten(1)))
        return self.head(F.relu(self.fc2(h)))


class FunctionalCNN(nn.Module):
    """The demo CNN's shape (two 3x3 convolutions, 2x2 max pooling, a 64-unit hidden
    layer) with ``torch.relu``/``F.relu``/``F.max_pool2d`` called in forward."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc = nn.Linear(32 * 4 * 4, 64)
        self.head = nn.Linear(64, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv1(x))
        h = F.max_pool2d(torch.relu(self.conv2(h)), 2)
        return self.head(F.relu(self.fc(h.flatten(1))))
