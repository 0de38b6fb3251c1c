"""What the benchmarks share: the best-of-N timer, and where they record their measurements
(``benchmarks/results/NAME.json``, not in git)."""

import json
import time
from pathlib import Path


def best_time(fn, repeats: int):
    """The shortest wall time (s) of ``repeats`` calls of ``fn``, and the last call's result."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def write_result(name: str, result: dict) -> Path:
    out = Path(__file__).parent / "results" / f"{name}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"written {out}")
    return out
