"""Step 3 (the Python with torch): the trained query model as ONNX, float32.

    python export.py query-model.pt query-model.fp32.onnx

Inputs `input_ids` and `attention_mask`, output `last_hidden_state`, as the published model's ONNX
export has them: the service pools and normalises both models' outputs the same way.
"""

from __future__ import annotations

import sys

import torch
from minilm import MiniLM
from torch import nn


class LastHiddenState(nn.Module):
    def __init__(self, model: MiniLM) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model.hidden(input_ids, attention_mask)


def main(weights: str, out: str) -> None:
    model = MiniLM()
    model.load_state_dict(torch.load(weights))
    model.eval()
    ids = torch.tensor([[101, 2023, 2003, 102]])
    axes = {0: "batch", 1: "sequence"}
    torch.onnx.export(
        LastHiddenState(model),
        (ids, torch.ones_like(ids)),
        out,
        input_names=["input_ids", "attention_mask"],
        output_names=["last_hidden_state"],
        opset_version=14,
        dynamic_axes={"input_ids": axes, "attention_mask": axes, "last_hidden_state": axes},
    )
    print(f"-> {out}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
