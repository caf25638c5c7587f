from __future__ import annotations

import asyncio
import importlib
import sys

PARTS = ["ledger", "postbacks"]


def main(argv: list[str]) -> int:
    parts = argv or PARTS
    for part in parts:
        if part not in PARTS:
            print(f"unknown benchmark {part!r}; one of {', '.join(PARTS)}", file=sys.stderr)
            return 2
    for part in parts:
        print(f"=== {part}", flush=True)
        asyncio.run(importlib.import_module(f"scripts.bench.{part}").main())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
