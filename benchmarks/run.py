"""`make bench`: run every benchmarks/bench_*.py (or those named on the command line) and print
each result with its ratio to the baseline measured in the same run.

A bench module exposes run() -> list of dicts: {"name", "value", "unit", and optionally
"baseline" (the same measurement untraced / for the reference), "ratio_to", "note"}.
"""

from __future__ import annotations

import importlib.util
import json
import pathlib
import sys
import time

HERE = pathlib.Path(__file__).parent


def main(argv: list[str]) -> int:
    wanted = set(argv)
    results = []
    for path in sorted(HERE.glob("bench_*.py")):
        if wanted and path.stem not in wanted and path.stem.removeprefix("bench_") not in wanted:
            continue
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        spec.loader.exec_module(module)
        print(f"== {path.stem}", flush=True)
        started = time.perf_counter()
        for row in module.run():
            row.setdefault("bench", path.stem)
            results.append(row)
            line = f"  {row['name']:<58} {row['value']:>12.3f} {row['unit']}"
            if row.get("baseline"):
                line += (
                    f"   ({row['value'] / row['baseline']:.2f}x {row.get('ratio_to', 'baseline')})"
                )
            if row.get("note"):
                line += f"   {row['note']}"
            print(line, flush=True)
        print(f"  ({time.perf_counter() - started:.1f}s)", flush=True)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
