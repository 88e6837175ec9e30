"""Small PyTorch modules for tests/test_torch.py, and factories the CLI imports by
`tests.torch_models:NAME` (as it would `torchvision.models:resnet50`). torch is imported
here, so only tests that have it import this module."""

from __future__ import annotations

import torch
from torch import nn


class SmallCNN(nn.Module):
    """conv 3->8 k3 (no bias) + BatchNorm + ReLU, a bottleneck-like block, pooling, a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.block = Block(8)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.block(self.stem(x))), 1))


class Block(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()  # called twice, as torchvision's Bottleneck does

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + x)


class TransferModel(nn.Module):
    """The seed's transfer-learning case, small: a frozen VGG-style backbone and a new head."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(32 * 8 * 8, 64), nn.ReLU(), nn.Linear(64, 5))
        self.features.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class TiedLM(nn.Module):
    """An embedding whose weight the output projection shares (as GPT-2's lm_head does), around
    one attention layer."""

    def __init__(self, vocab: int = 50, width: int = 16, heads: int = 2) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.attention = nn.MultiheadAttention(width, heads, batch_first=True)
        self.head = nn.Linear(width, vocab, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)
        attended, _ = self.attention(x, x, x, need_weights=False)
        return self.head(attended)


class Unexportable(nn.Module):
    """forward() turns a tensor into a Python number and branches on it: data-dependent
    control flow that no exporter can trace to one graph."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if float(x.sum()) > 0:
            return self.fc(x)
        return x.numpy().sum()  # type: ignore[return-value]


def small_cnn() -> nn.Module:
    return SmallCNN()


def not_a_module() -> str:
    return "a string"
