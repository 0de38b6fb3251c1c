"""Where the benchmarks record their measurements: ``benchmarks/results/NAME.json`` (not in git)."""

import json
from pathlib import Path


def write_result(name: str, result: dict) -> Path:
    out = Path(__file__).parent / "results" / f"{name}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"written {out}")
    return out
