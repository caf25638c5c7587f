"""`make bench`: every figure printed beside a baseline measured in the same run; nothing asserted.
Each part is a module with `async def main() -> None`; `python -m scripts.bench [part ...]`."""
