"""Research (a Python with torch): train the tool side too, so definitions land where their needs do.

    python train_tool_side.py --tools TOOLS.npz --weights model.safetensors --out DIR
        [--towers shared|separate|definitions] [--steps N] [--hold-out] [--queries QUERIES.jsonl]

`train.py` fine-tunes the query tower against the fixed vectors the published model gives each
definition. This trains a bi-encoder: a query tower for needs and a definition tower for the tools'
texts (`services.codemode.vectors.tool_text`, from step 1's npz), both from all-MiniLM-L6-v2, either
one model for both (`shared`), two (`separate`), or the definition tower alone, queries embedded by
the query tower as it starts (`definitions`: the published model, or `--query-start`'s). Each
batch is 32 tools of a few servers (8 of each, so the near-twins of one server are each other's
negatives), one of its needs for each: in-batch softmax both ways, need to definitions and
definition to needs (cosine × 20).
Only the top `--train-layers` (2) of each tower learn: the frozen layers below run once per text
(`--cache` keeps their output between runs), which makes a step 4 s instead of 18 on a busy 2-core
machine.

`--hold-out` trains without every third server (train.py's split: 22 of 68). `--queries` embeds
the graded set's queries (read only, to judge) with the trained query tower, and every tool of the
npz with the trained definition tower, into DIR/vectors.npz for `judge_tool_side.py`.
"""

from __future__ import annotations

import copy
import json
import random
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from minilm import MiniLM, load
from tokenizers import Tokenizer
from torch import nn
from train import TOKENIZER, held_out, training_parser

PER_SERVER = 8


class Top(nn.Module):
    """The top layers of a MiniLM, trained; the layers below are frozen and run once per text (`bottom`)."""

    def __init__(self, model: MiniLM, layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for layer in model.layers[len(model.layers) - layers :])

    def forward(self, hidden: list[torch.Tensor]) -> torch.Tensor:
        x = nn.utils.rnn.pad_sequence(hidden, batch_first=True)
        mask = nn.utils.rnn.pad_sequence([torch.ones(len(h)) for h in hidden], batch_first=True)
        bias = ((1.0 - mask) * -10000.0)[:, None, None, :]
        for layer in self.layers:
            x = layer(x, bias)
        pooled = (x * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1e-9)
        return nn.functional.normalize(pooled, dim=-1)

    def into(self, model: MiniLM) -> MiniLM:
        """`model` with these top layers: a whole model again, for export.py."""
        whole = copy.deepcopy(model)
        for i, layer in enumerate(self.layers):
            whole.layers[len(whole.layers) - len(self.layers) + i].load_state_dict(layer.state_dict())
        return whole


def tokenizer() -> Tokenizer:
    tokens = Tokenizer.from_file(str(TOKENIZER))
    tokens.enable_truncation(max_length=128)
    tokens.enable_padding(pad_id=0, pad_token="[PAD]")
    return tokens


@torch.no_grad()
def bottom(model: MiniLM, tokens: Tokenizer, texts: list[str], trained: int) -> list[torch.Tensor]:
    """Each text's hidden states below the `trained` top layers, its real tokens only."""
    model.eval()
    out: list[torch.Tensor] = [torch.zeros(0)] * len(texts)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    for start in range(0, len(order), 64):
        chunk = order[start : start + 64]
        encodings = tokens.encode_batch([texts[i].lower() for i in chunk])
        ids = torch.tensor([e.ids for e in encodings])
        mask = torch.tensor([e.attention_mask for e in encodings])
        positions = torch.arange(ids.shape[1]).unsqueeze(0)
        x = model.ln(model.word(ids) + model.pos(positions) + model.segment(torch.zeros_like(ids)))
        bias = ((1.0 - mask.to(x.dtype)) * -10000.0)[:, None, None, :]
        for layer in model.layers[: len(model.layers) - trained]:
            x = layer(x, bias)
        for row, i in enumerate(chunk):
            out[i] = x[row, : int(mask[row].sum())].clone()
    return out


@torch.no_grad()
def embed(top: Top, hidden: list[torch.Tensor]) -> np.ndarray:
    top.eval()
    return np.concatenate([top(hidden[start : start + 64]).numpy() for start in range(0, len(hidden), 64)])


def batches(by_server: dict[str, dict[int, list[str]]], size: int, rng: random.Random):
    """Endless batches of (need, tool row): a few servers, up to PER_SERVER tools of each, one need each."""
    servers = sorted(by_server)
    while True:
        batch: list[tuple[str, int]] = []
        for server in rng.sample(servers, len(servers)):
            tools = list(by_server[server])
            for tool in rng.sample(tools, min(PER_SERVER, len(tools), size - len(batch))):
                batch.append((rng.choice(by_server[server][tool]), tool))
            if len(batch) == size:
                break
        yield batch


def main() -> None:
    parser = training_parser(__doc__, "a directory for the towers and vectors")
    parser.add_argument("--towers", choices=["shared", "separate", "definitions"], default="shared")
    parser.add_argument("--query-start", type=Path, help="a state dict to start the query tower from (train.py's)")
    parser.add_argument("--steps", type=int, default=250)
    parser.add_argument("--train-layers", type=int, default=2, help="top layers trained (the rest frozen)")
    parser.add_argument("--cache", type=Path, help="the frozen layers' output, kept here between runs of one start")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--queries", type=Path, help="graded queries to embed after training (judging only)")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)

    tools = np.load(args.tools)
    names = [str(name) for name in tools["names"]]
    texts = [str(text) for text in tools["texts"]]
    skip = held_out(list({name.split("__", 1)[0] for name in names})) if args.hold_out else set()
    row = {name: i for i, name in enumerate(names) if name.split("__", 1)[0] not in skip}
    by_server: dict[str, dict[int, list[str]]] = defaultdict(dict)
    for line in args.data.read_text().splitlines():
        if line.strip():
            need = json.loads(line)
            qualified = f"{need['written_for']}__{need['tool']}"
            if qualified in row and need["needs"]:
                by_server[need["written_for"]][row[qualified]] = need["needs"]
    count = sum(len(n) for tools_of in by_server.values() for n in tools_of.values())
    print(f"{count} needs over {len(row)} tools of {len(by_server)} servers; {len(skip)} held out", flush=True)

    tokens = tokenizer()
    published = load(str(args.weights))
    asker = published
    if args.query_start is not None:
        asker = load(str(args.weights))
        asker.load_state_dict(torch.load(args.query_start))
    definer = asker if args.towers == "shared" else published
    queries = Top(asker, args.train_layers)
    definitions = queries if args.towers == "shared" else Top(definer, args.train_layers)
    pairs = [(need, tool) for tools_of in by_server.values() for tool, needs in tools_of.items() for need in needs]
    started = time.time()
    if args.cache is not None and args.cache.exists():
        need_hidden, text_hidden = torch.load(args.cache)
    else:
        asks = sorted({need for need, _ in pairs})
        need_hidden = dict(zip(asks, bottom(asker, tokens, asks, args.train_layers), strict=True))
        text_hidden = bottom(definer, tokens, texts, args.train_layers)
        if args.cache is not None:
            torch.save((need_hidden, text_hidden), args.cache)
    print(f"frozen layers run once: {time.time() - started:.0f} s", flush=True)
    learning = [definitions] if args.towers == "definitions" else [queries, definitions]
    queries.requires_grad_(queries in learning)
    params = list({id(p): p for tower in learning for p in tower.parameters()}.values())
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    total = max(1, args.steps)
    warmup = max(1, total // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup) * max(0.0, (total - step) / total)
    )
    started = time.time()
    queries.train()
    definitions.train()
    stream = batches(by_server, args.batch, rng)
    for step in range(args.steps):
        batch = next(stream)
        asked = queries([need_hidden[need] for need, _ in batch])
        defined = definitions([text_hidden[tool] for _, tool in batch])
        logits = args.scale * asked @ defined.T
        labels = torch.arange(len(batch))
        loss = (nn.functional.cross_entropy(logits, labels) + nn.functional.cross_entropy(logits.T, labels)) / 2
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 20 == 0 or step == args.steps - 1:
            print(f"step {step + 1}/{args.steps}  loss {loss.item():.3f}  {time.time() - started:.0f} s", flush=True)
    torch.save(queries.into(asker).state_dict(), args.out / "queries.pt")
    if args.towers != "shared":
        torch.save(definitions.into(definer).state_dict(), args.out / "definitions.pt")
    if args.queries is not None:
        graded = [json.loads(line)["query"] for line in args.queries.read_text().splitlines() if line.strip()]
        np.savez(
            args.out / "vectors.npz",
            names=np.array(names),
            tools=embed(definitions, text_hidden),
            queries=np.array(graded),
            query_vectors=embed(queries, bottom(asker, tokens, graded, args.train_layers)),
        )
        print(f"-> {args.out / 'vectors.npz'}", flush=True)


if __name__ == "__main__":
    main()
