"""Step 2 (a Python with torch): fine-tune all-MiniLM-L6-v2 to embed agents' needs next to their tools.

    python train.py --tools TOOLS.npz --weights model.safetensors --out query-model.pt [--epochs 2]

Only the query side is trained. The tools keep the vectors the published model gives them (step 1),
so the service's cached tool vectors stay valid and any catalog is embedded as before. Each training
query is pulled toward its tool and pushed from every other tool of the catalog at once: a softmax
over all tool vectors (cross-entropy, scale 20), the near-twins of the same server included.

Training data: the shipped needs (services/codemode/models/tool-needs.jsonl), each line a tool
(`written_for`: its server, `tool`) and its `needs`.
`--hold-out` leaves out every third server (sorted by name, from the third), to judge how the model
does on servers it never saw a query for (README.md).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
import torch
from minilm import load
from tokenizers import Tokenizer

HERE = Path(__file__).resolve().parent
MODELS = HERE.parents[1] / "services" / "codemode" / "models"
TOKENIZER = MODELS / "all-MiniLM-L6-v2.tokenizer.json"


def held_out(servers: list[str]) -> set[str]:
    return {server for i, server in enumerate(sorted(servers)) if i % 3 == 2}


def training_parser(doc: str | None, out: str) -> argparse.ArgumentParser:
    """The options every training script here takes (`out`: what `--out` names)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tools", type=Path, required=True, help="step 1's npz (names, texts, vectors)")
    parser.add_argument("--weights", type=Path, required=True, help="all-MiniLM-L6-v2 model.safetensors (fp32)")
    parser.add_argument("--out", type=Path, required=True, help=out)
    parser.add_argument("--data", type=Path, default=MODELS / "tool-needs.jsonl")
    parser.add_argument("--hold-out", action="store_true", help="train without every third server")
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--scale", type=float, default=20.0)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main() -> None:
    parser = training_parser(__doc__, "the trained state dict (.pt)")
    parser.add_argument("--epochs", type=float, default=2)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    torch.set_num_threads(2)

    tools = np.load(args.tools)
    names = [str(name) for name in tools["names"]]
    skip = held_out(list({name.split("__", 1)[0] for name in names})) if args.hold_out else set()
    keep = [i for i, name in enumerate(names) if name.split("__", 1)[0] not in skip]
    row = {names[i]: n for n, i in enumerate(keep)}
    targets = torch.from_numpy(np.ascontiguousarray(tools["vectors"][keep], dtype=np.float32))
    rows = [json.loads(line) for line in args.data.read_text().splitlines() if line.strip()]
    qualified = [(f"{r['written_for']}__{r['tool']}", r["needs"]) for r in rows]
    pairs = [(need, row[tool]) for tool, needs in qualified if tool in row for need in needs]
    print(f"{len(pairs)} queries over {len(keep)} tools; {len(skip)} servers held out", flush=True)

    tokenizer = Tokenizer.from_file(str(TOKENIZER))
    tokenizer.enable_truncation(max_length=128)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    model = load(str(args.weights))
    steps = max(1, int(len(pairs) * args.epochs / args.batch))
    warmup = max(1, steps // 10)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup) * max(0.0, (steps - step) / steps)
    )
    started = time.time()
    model.train()
    order: list[int] = []
    for step in range(steps):
        if len(order) < args.batch:
            order += rng.sample(range(len(pairs)), len(pairs))
        chosen, order = order[: args.batch], order[args.batch :]
        encodings = tokenizer.encode_batch([pairs[i][0].lower() for i in chosen])
        ids = torch.tensor([e.ids for e in encodings])
        mask = torch.tensor([e.attention_mask for e in encodings])
        labels = torch.tensor([pairs[i][1] for i in chosen])
        loss = torch.nn.functional.cross_entropy(args.scale * model(ids, mask) @ targets.T, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 50 == 0 or step == steps - 1:
            print(f"step {step + 1}/{steps}  loss {loss.item():.3f}  {time.time() - started:.0f} s", flush=True)
    torch.save(model.state_dict(), args.out)
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
