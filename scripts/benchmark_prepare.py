"""Time `convssl prepare` on the full chitchat corpus plus the 30 SGD training files.

Target: the whole chitchat corpus curated, tokenised and sharded in under 60 s on a 2-core CPU.
Prints turns per second for every stage, the total time and the peak resident memory.

    python scripts/benchmark_prepare.py [SGD_DIR] [--out DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sgd", nargs="?", default=str(REPO.parent / "shared" / "data" / "sgd" / "train"),
                        help="SGD folder (default ../shared/data/sgd/train); 'none' for chitchat only")
    parser.add_argument("--out", help="output folder (default: a temporary folder, removed afterwards)")
    parser.add_argument("--json", help="also write the measured numbers to this JSON file")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. tokenizer.vocab_size=8000")
    args = parser.parse_args()

    from convssl.config import load_config
    from convssl.data.config import PrepareConfig
    from convssl.data.pipeline import run_prepare

    inputs = ["chitchat"] + ([] if args.sgd == "none" else [args.sgd])
    overrides = [f"inputs.paths=[{','.join(repr(p) for p in inputs)}]", *args.overrides]
    config = load_config(PrepareConfig, "prepare", overrides)
    with tempfile.TemporaryDirectory(prefix="convssl-bench-") as tmp:
        out = Path(args.out) if args.out else Path(tmp)
        started = time.perf_counter()
        report = run_prepare(config, out, progress=False)
        wall = time.perf_counter() - started
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    utterances = count_utterances(report)
    print_numbers(report, wall, peak_mib)
    print(f"utterances in (chitchat messages + SGD turns): {utterances:,} -> {utterances / wall:,.0f} utterances/s "
          "end to end")
    if args.json:
        Path(args.json).write_text(json.dumps({"wall_seconds": wall, "peak_rss_mib": peak_mib,
                                               "timings": report["timings"],
                                               "cpu_timings": report["cpu_timings"], "counts": report["counts"],
                                               "stages": report["stages"], "shards": report.get("shards")}, indent=2))
    return 0 if wall < 60 else 1


def count_utterances(report: dict) -> int:
    """Chitchat counts messages (several per turn); counted after the timed run, from the inputs."""
    total = 0
    for source in report["inputs"]:
        if source["format"] == "chitchat":
            data = json.loads(Path(source["path"]).read_text(encoding="utf-8"))
            total += sum(len(group) for conv in data.values() for group in conv["messages"])
        else:
            total += source.get("turns", 0)
    return total


def print_numbers(report: dict, wall: float, peak_mib: float) -> None:
    c = report["counts"]
    timings = report["timings"]
    print(f"inputs: {', '.join(s['input'] for s in report['inputs'])}")
    print(f"dialogues read {c['dialogues_read']:,} ({c['turns_read']:,} turns); kept {c['dialogues_kept']:,} "
          f"({c['turns_kept']:,} turns); rejected {c['rejected']:,}")
    cpu = report["cpu_timings"]
    print("turns/s = turns into the stage / wall seconds; CPU s = process CPU time (all threads)")
    print(f"{'stage':<14}{'wall s':>8}{'CPU s':>8}{'turns in':>11}{'turns/s':>11}  removed")
    for stage in report["stages"]:
        rate = stage["turns_in"] / stage["seconds"] if stage["seconds"] else float("inf")
        removed = ", ".join(f"{k} {v:,}" for k, v in stage["removed"].items())
        print(f"{stage['stage']:<14}{stage['seconds']:>8.2f}{stage['cpu_seconds']:>8.2f}{stage['turns_in']:>11,}"
              f"{rate:>11,.0f}  {removed}")
    kept_turns = max(1, c["turns_kept"])
    for name in ("split", "write", "tokenizer", "shards", "report"):
        if name in timings:
            secs = timings[name]
            rate = kept_turns / secs if secs else float("inf")
            print(f"{name:<14}{secs:>8.2f}{cpu[name]:>8.2f}{kept_turns:>11,}{rate:>11,.0f}")
    tokens = sum(s["tokens"] for s in report.get("shards", {}).values())
    print(f"tokens written: {tokens:,}")
    print(f"CPU time of the run: {cpu['total']:.1f} s; load average while it ran: {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores (shared machine: wall times grow with other jobs)")
    print(f"total: {wall:.1f} s ({c['turns_read'] / wall:,.0f} turns/s end to end); "
          f"peak RSS {peak_mib:,.0f} MiB; target < 60 s: {'met' if wall < 60 else 'MISSED'}")


if __name__ == "__main__":
    sys.exit(main())
