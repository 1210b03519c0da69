"""What a console catalog search costs the admin service: `services.admin.console.catalog.search` over
N tools (15 servers), for an empty query (every tool, first page), a narrowing one and one matching
nothing; median of repeated runs. The KV read of the catalogs is not included (one `bastion_catalog`
listing per request).

    .venv/bin/python bench/console_catalog.py [--tools 1500] [--rounds 50]
"""

from __future__ import annotations

import argparse
import statistics
import time

from libs.common.contracts.messages import CatalogTool, ServerCatalog
from services.admin.console.catalog import search


def catalogs(tools: int, servers: int = 15) -> list[ServerCatalog]:
    per = max(1, tools // servers)
    return [
        ServerCatalog(
            server=f"s{i:02d}",
            status="ready",
            tools=[
                CatalogTool(
                    tool=f"tool_{j:04d}",
                    definition={
                        "name": f"tool_{j:04d}",
                        "description": f"does thing {j} for server {i}",
                        "inputSchema": {"type": "object", "properties": {"query": {"type": "string"}}},
                    },
                )
                for j in range(per)
            ],
        )
        for i in range(servers)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tools", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    data = catalogs(args.tools)
    for query in ("", "thing 42", "nothing-matches"):
        times = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            page = search(data, query, None, 0, 50)
            times.append(time.perf_counter() - start)
        median = statistics.median(times) * 1000
        print(f"{args.tools} tools, q={query!r:18} {page.total:5} matches  median {median:.2f} ms")


if __name__ == "__main__":
    main()
