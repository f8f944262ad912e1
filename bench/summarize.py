"""Turn a bench/single_node.sh output folder into a Markdown table with ratios to Redis."""

from __future__ import annotations

import csv
import sys
from pathlib import Path


def read_csv(path: Path) -> dict[str, dict[str, float]]:
    """redis-benchmark --csv rows: test name -> {rps, p50, p99} (ms)."""
    rows: dict[str, dict[str, float]] = {}
    lines = [ln for ln in path.read_text().splitlines() if ln.startswith('"')]
    for row in csv.DictReader(lines):
        rows[row["test"]] = {
            "rps": float(row["rps"]),
            "p50": float(row["p50_latency_ms"]),
            "p99": float(row["p99_latency_ms"]),
        }
    return rows


def main(out: Path) -> None:
    labels = {
        "shardkv": "ShardKV (fsync every batch)",
        "single_always": "Redis AOF always",
        "single_everysec": "Redis AOF everysec",
    }
    print("| system | pipeline | SET ops/s | SET p50/p99 ms | GET ops/s | GET p50/p99 ms |")
    print("|---|---|---|---|---|---|")
    results: dict[tuple[str, str], dict[str, dict[str, float]]] = {}
    for prefix, label in labels.items():
        for p in ("P1", "P16"):
            f = out / f"{prefix}_{p}.txt"
            if not f.exists():
                continue
            r = read_csv(f)
            results[(prefix, p)] = r
            s, g = r["SET"], r["GET"]
            print(
                f"| {label} | -{p} | {s['rps']:,.0f} | {s['p50']:.2f} / {s['p99']:.2f} "
                f"| {g['rps']:,.0f} | {g['p50']:.2f} / {g['p99']:.2f} |"
            )
    print()
    for p in ("P1", "P16"):
        ours = results.get(("shardkv", p))
        if ours is None:
            continue
        for anchor in ("single_always", "single_everysec"):
            theirs = results.get((anchor, p))
            if theirs is None:
                continue
            print(
                f"- -{p}: ShardKV / {labels[anchor]}: SET "
                f"{ours['SET']['rps'] / theirs['SET']['rps']:.2f}x, GET "
                f"{ours['GET']['rps'] / theirs['GET']['rps']:.2f}x"
            )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
