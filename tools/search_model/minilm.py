"""all-MiniLM-L6-v2 (BERT: 6 layers, 384 wide, 12 heads) in plain torch, loaded from its safetensors file.

Sixty lines instead of `transformers` and `sentence-transformers`, so training needs only torch,
`safetensors` and `tokenizers`; `export.py` checks nothing against it, but the vectors it gives the
published weights match the service's ONNX model's (cosine 0.9994-0.9997 on the catalog's tools).
"""

from __future__ import annotations

import math

import torch
from safetensors.numpy import load_file
from torch import nn

H, HEADS, FF, LAYERS, VOCAB, POS = 384, 12, 1536, 6, 30522, 512


class Layer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(H, H) for _ in range(4))
        self.ln1 = nn.LayerNorm(H, eps=1e-12)
        self.ff1, self.ff2 = nn.Linear(H, FF), nn.Linear(FF, H)
        self.ln2 = nn.LayerNorm(H, eps=1e-12)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        d = H // HEADS

        def split(y: torch.Tensor) -> torch.Tensor:
            return y.view(b, t, HEADS, d).transpose(1, 2)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d) + bias, dim=-1)
        ctx = (att @ v).transpose(1, 2).reshape(b, t, H)
        x = self.ln1(x + self.o(ctx))
        return self.ln2(x + self.ff2(nn.functional.gelu(self.ff1(x))))


class MiniLM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.word = nn.Embedding(VOCAB, H)
        self.pos = nn.Embedding(POS, H)
        self.segment = nn.Embedding(2, H)
        self.ln = nn.LayerNorm(H, eps=1e-12)
        self.layers = nn.ModuleList(Layer() for _ in range(LAYERS))

    def hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The last layer's output per token (what the ONNX export returns)."""
        positions = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)
        x = self.ln(self.word(input_ids) + self.pos(positions) + self.segment(torch.zeros_like(input_ids)))
        bias = ((1.0 - attention_mask.to(x.dtype)) * -10000.0)[:, None, None, :]
        for layer in self.layers:
            x = layer(x, bias)
        return x

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Mean-pooled over the real tokens and L2-normalised, as sentence-transformers does."""
        weights = attention_mask.to(torch.float32).unsqueeze(-1)
        pooled = (self.hidden(input_ids, attention_mask) * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        return nn.functional.normalize(pooled, dim=-1)


def load(path: str) -> MiniLM:
    weights = load_file(path)
    model = MiniLM()
    names = {
        "word.weight": "embeddings.word_embeddings.weight",
        "pos.weight": "embeddings.position_embeddings.weight",
        "segment.weight": "embeddings.token_type_embeddings.weight",
        "ln.weight": "embeddings.LayerNorm.weight",
        "ln.bias": "embeddings.LayerNorm.bias",
    }
    part = {
        "q": "attention.self.query",
        "k": "attention.self.key",
        "v": "attention.self.value",
        "o": "attention.output.dense",
        "ln1": "attention.output.LayerNorm",
        "ff1": "intermediate.dense",
        "ff2": "output.dense",
        "ln2": "output.LayerNorm",
    }
    for i in range(LAYERS):
        for ours, theirs in part.items():
            for p in ("weight", "bias"):
                names[f"layers.{i}.{ours}.{p}"] = f"encoder.layer.{i}.{theirs}.{p}"
    state = {ours: torch.from_numpy(weights[theirs].copy()) for ours, theirs in names.items()}
    model.load_state_dict(state, strict=True)
    return model
