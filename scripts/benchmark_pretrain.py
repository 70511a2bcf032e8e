#!/usr/bin/env python
"""Pretraining speed: the standard Hugging Face MLM recipe vs convssl's loop, same model and data.

Both sides train the `mini` BERT (4 x 256) with 15% masking on the chitchat corpus, with the same
batch size (rows) and maximum length, in bf16 autocast on the CPU. Rounds alternate (HF, convssl,
HF, convssl, ...) so machine noise hits both. Reported per side: real (non-pad) tokens/s, model
FLOPs utilisation against a bf16 matmul peak measured in this run, and peak resident memory.

FLOPs are counted honestly, per real token: the encoder body (projections, FFN), attention
(quadratic in each row's real length) and the LM head only at the masked positions; padding and
logits nobody needs are not credited to either side. Training = 3 x forward.

    python scripts/benchmark_pretrain.py             # full run
    python scripts/benchmark_pretrain.py --quick     # seconds, to check it works
    python scripts/benchmark_pretrain.py --tracking  # convssl's loop with MLflow tracking off vs on
    GOMP_SPINCOUNT=0 python scripts/benchmark_pretrain.py    # idle threads sleep at once

Threads: run it alone. Both sides share this process and its OpenMP settings: worker threads
spin for about 3 ms (GOMP_SPINCOUNT=300000, libgomp's default when no wait policy is set)
before they sleep (OMP_WAIT_POLICY=PASSIVE), so back-to-back operations do not pay a wake-up
each; with another busy process on the cores, spinning costs more than it saves: set
GOMP_SPINCOUNT=0 there.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("GOMP_SPINCOUNT", "300000")  # read when torch loads OpenMP: before the import
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402


def _status_mib(field: str) -> float:
    with open("/proc/self/status", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


class PeakMemory:
    """Peak resident memory of a round: the kernel's high-water mark (VmHWM), reset before the
    round through /proc/self/clear_refs, so nothing samples (and wakes up) during the timing.
    Where the reset is refused, a thread samples VmRSS every 5 ms instead."""

    def __enter__(self) -> PeakMemory:
        self._thread = None
        try:
            with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
                handle.write("5")
        except OSError:
            self.peak = _status_mib("VmRSS")
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _status_mib("VmRSS"))

    def __exit__(self, *exc) -> None:
        if self._thread is None:
            self.peak = _status_mib("VmHWM")
        else:
            self._stop.set()
            self._thread.join()


def bf16_peak_flops(sizes: tuple[int, ...] = (1024, 2048, 4096), repeats: int = 8) -> float:
    """The best bf16 matmul rate (FLOP/s) over a few square sizes: the highest peak makes the
    lowest MFU."""
    from convssl.train.precision import matmul_gflops

    return max(matmul_gflops(torch.bfloat16, size, repeats, best=True) for size in sizes) * 1e9


def prepare(data: Path | None, n_dialogues: int, work: Path, vocab_size: int = 16000) -> Path:
    """A prepared folder (tokenizer + shards) of chitchat dialogues, unless one is given."""
    if data is not None:
        return data
    from convssl.data.readers.chitchat import read_chitchat
    from convssl.data.shards import write_manifest, write_shards
    from convssl.data.tokenizer import load_tokenizer, train_tokenizer

    dialogues = [d for d in read_chitchat(limit=n_dialogues) if len(d.turns) >= 2]
    n_val = max(8, len(dialogues) // 50)
    train_tokenizer((t.text for d in dialogues for t in d.turns), work / "tokenizer", vocab_size=vocab_size, lowercase=True)
    tok = load_tokenizer(work / "tokenizer")
    stats = {
        "train": write_shards(dialogues[n_val:], tok, work / "shards", "train", progress=False),
        "validation": write_shards(dialogues[:n_val], tok, work / "shards", "validation", progress=False),
    }
    write_manifest(work / "shards", work / "tokenizer", stats, ["chitchat"])
    return work


def model_flops(lengths: np.ndarray, masked: float, layers: int, hidden: int, ffn: int, vocab: int) -> float:
    """Training FLOPs (3 x forward) of rows with these real lengths and this many predicted tokens."""
    tokens = float(lengths.sum())
    body = 2 * tokens * layers * (4 * hidden * hidden + 2 * hidden * ffn)
    attention = 2 * 2 * float((lengths.astype(np.float64) ** 2).sum()) * hidden * layers
    head = 2 * masked * (hidden * hidden + hidden * vocab)
    return 3 * (body + attention + head)


def hf_examples(data: Path, tokenizer, max_length: int, count: int, unit: str = "dialogue") -> list[list[int]]:
    """One example per dialogue ([CLS] turns [SEP], cut to max_length), or per turn with
    `unit="turn"` (the line-by-line recipe: short rows, much more padding)."""
    from convssl.data.shards import ShardReader
    from convssl.data.special_tokens import special_ids
    from convssl.pretext.base import turn_segment

    ids = special_ids(tokenizer)
    rows = []
    for dialogue in ShardReader(data / "shards", "train", shuffle=True, seed=0, loop=True):
        segments = [turn_segment(ids, r, t) for t, r in zip(dialogue.turns, dialogue.roles)]
        bodies = segments if unit == "turn" else [np.concatenate(segments)]
        for body in bodies:
            rows.append([ids.bos, *body[: max_length - 2].tolist(), ids.eos])
            if len(rows) >= count:
                return rows
    return rows


def run_hf(model, tokenizer, examples, batch: int, steps: int, lr: float, out: Path) -> dict:
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

    collator = DataCollatorForLanguageModeling(tokenizer, mlm=True, mlm_probability=0.15)
    counted = {"tokens": 0, "masked": 0, "lengths": [], "padded": 0}

    def collate(features):
        out_batch = collator(features)
        mask = out_batch["attention_mask"]
        counted["tokens"] += int(mask.sum())
        counted["masked"] += int((out_batch["labels"] != -100).sum())
        counted["lengths"].extend(mask.sum(1).tolist())
        counted["padded"] += mask.numel()
        return out_batch

    args = TrainingArguments(
        output_dir=str(out), per_device_train_batch_size=batch, max_steps=steps, learning_rate=lr,
        bf16=True, use_cpu=True, report_to=[], save_strategy="no", logging_strategy="no",
        dataloader_num_workers=0, disable_tqdm=True, seed=0,
    )
    dataset = [{"input_ids": e} for e in examples]
    trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collate)
    with PeakMemory() as mem:
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    lengths = np.asarray(counted["lengths"])
    return {"seconds": seconds, "tokens": counted["tokens"], "masked": counted["masked"],
            "lengths": lengths, "peak_rss_mib": mem.peak, "padding": 1 - counted["tokens"] / max(1, counted["padded"])}


def run_convssl(data: Path, batch: int, steps: int, lr: float, max_length: int, out: Path,
                log_every: int = 1000000, track_uri: str | None = None) -> dict:
    from convssl.config import load_config
    from convssl.train.config import PretrainConfig
    from convssl.train.loop import Trainer

    overrides = [
        f"data={data}", "model.preset=mini", "model.attention=eager", f"batch_size={batch}", f"max_steps={steps}",
        f"lr={lr}", "warmup_steps=0", "eval_every=0", "checkpoint_every=0", f"log_every={log_every}",
        "tensorboard=false", "progress=false", "plot=false",
    ]
    config = load_config(PretrainConfig, "pretrain_mini_mlm", overrides)
    config.objectives[0].max_length = max_length  # a list item: not reachable by key=value overrides
    session = None
    if track_uri:  # what `convssl pretrain` does around the verb when tracking is on
        from convssl.tracking.command import CommandRun
        from convssl.tracking.settings import TrackingSettings

        settings = TrackingSettings(True, track_uri, "benchmark")
        session = CommandRun("pretrain", ["pretrain", "--out", str(out)], settings, str(out)).start()
    trainer = Trainer(config, out)
    counted = {"lengths": [], "masked": 0, "positions": 0}
    with PeakMemory() as mem:
        try:
            result = trainer.train()
        finally:
            if session is not None:
                session.finish("FINISHED")
    tracking_cpu = session.thread_cpu_seconds if session is not None else 0.0
    seconds = result.last_metrics["elapsed"]
    # Count the rows' real lengths and masked positions from an identical stream, outside the timing.
    probe = trainer._stream(0, "train")
    for _ in range(steps):
        b = next(probe)
        mask = b.tensors.get("attention_mask")
        lengths = mask.sum(1) if mask is not None else torch.full((b.size,), b.tensors["input_ids"].shape[1])
        counted["lengths"].extend(lengths.tolist())
        counted["positions"] += b.tensors["input_ids"].numel()
        counted["masked"] += int(b.tensors["mlm_positions"].numel())
    lengths = np.asarray(counted["lengths"])
    return {"seconds": seconds, "tokens": result.tokens_seen, "masked": counted["masked"],
            "lengths": lengths, "peak_rss_mib": mem.peak, "padding": 1 - lengths.sum() / counted["positions"],
            "tracking_cpu_seconds": tracking_cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="prepared folder; default: build one from chitchat")
    parser.add_argument("--dialogues", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: all cores)")
    parser.add_argument("--vocab", type=int, default=16000, help="WordPiece vocabulary (convssl's default 16k)")
    parser.add_argument("--hf-unit", choices=["dialogue", "turn"], default="turn",
                        help="HF examples: single turns, the line-by-line recipe (default), or whole "
                             "dialogues cut to --max-length")
    parser.add_argument("--quick", action="store_true", help="tiny run to check the script works")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--tracking", action="store_true",
                        help="instead of HF vs convssl: convssl's loop with MLflow tracking off vs on (metrics "
                             "logged every step, sent by the tracking thread), the step time of each")
    parser.add_argument("--tracking-uri", help="store for --tracking (default: a fresh SQLite file)")
    args = parser.parse_args()
    if args.quick:
        args.dialogues, args.steps, args.rounds, args.batch = 600, 4, 1, 8
    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers import BertForMaskedLM

    from convssl.data.special_tokens import special_ids
    from convssl.data.tokenizer import load_tokenizer
    from convssl.models.presets import ModelConfig, hf_config
    from convssl.train.precision import cpu_description

    work = Path(tempfile.mkdtemp(prefix="convssl-bench-"))
    data = prepare(args.data, args.dialogues, work / "data", args.vocab)
    if args.tracking:
        compare_tracking(args, data, work)
        return
    tokenizer = load_tokenizer(data / "tokenizer")
    ids = special_ids(tokenizer)
    cfg = hf_config(ModelConfig(preset="mini", attention="sdpa"), len(tokenizer), ids.pad, ids.bos, ids.eos)
    cfg._attn_implementation = "sdpa"
    print(f"vocabulary: {len(tokenizer)} pieces ({args.vocab} asked); {args.dialogues} chitchat dialogues")
    examples = hf_examples(data, tokenizer, args.max_length, args.batch * args.steps, args.hf_unit)
    sizes = (512,) if args.quick else (1024, 2048, 4096)
    cpu = cpu_description()
    print(f"torch threads {torch.get_num_threads()}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, "
          f"GOMP_SPINCOUNT={os.environ.get('GOMP_SPINCOUNT')}; CPU: {cpu}")
    print("the bf16 matmul peak is measured before and after each side's run (the machine's speed drifts); "
          "each run's MFU is against the mean of the two")
    dims = dict(layers=cfg.num_hidden_layers, hidden=cfg.hidden_size, ffn=cfg.intermediate_size, vocab=cfg.vocab_size)
    results: dict[str, list[dict]] = {"hf": [], "convssl": []}
    peaks: list[float] = [bf16_peak_flops(sizes)]

    def record(round_: int, name: str, r: dict) -> None:
        """Score a finished run against the peak probed just before it and just after it; the
        finished run's garbage is collected before the next one starts."""
        gc.collect()
        peaks.append(bf16_peak_flops(sizes))
        peak = (peaks[-2] + peaks[-1]) / 2
        flops = model_flops(r["lengths"], r["masked"], **dims)
        r.update(tokens_per_s=r["tokens"] / r["seconds"], mfu=flops / r["seconds"] / peak, peak_gflops=peak / 1e9)
        results[name].append(r)
        print(f"round {round_ + 1} {name:8s} {r['tokens_per_s']:9.0f} real tok/s  MFU {100 * r['mfu']:5.1f}%  "
              f"(bf16 peak {peaks[-2] / 1e9:.0f} -> {peaks[-1] / 1e9:.0f} GFLOP/s)  "
              f"peak RSS {r['peak_rss_mib']:.0f} MiB  padding {100 * r['padding']:.0f}%")

    for round_ in range(args.rounds):
        torch.manual_seed(round_)
        record(round_, "hf", run_hf(BertForMaskedLM(cfg), tokenizer, examples, args.batch, args.steps, 1e-3,
                                    work / f"hf{round_}"))
        record(round_, "convssl", run_convssl(data, args.batch, args.steps, 1e-3, args.max_length,
                                              work / f"convssl{round_}"))
    summary = {}
    for name, rs in results.items():
        summary[name] = {
            "tokens_per_s": float(np.median([r["tokens_per_s"] for r in rs])),
            "mfu": float(np.median([r["mfu"] for r in rs])),
            "peak_rss_mib": float(max(r["peak_rss_mib"] for r in rs)),
            "padding": float(np.mean([r["padding"] for r in rs])),
            "mfu_per_round": [r["mfu"] for r in rs],
            "peak_gflops_per_round": [r["peak_gflops"] for r in rs],
        }
    ratios = [c["tokens_per_s"] / h["tokens_per_s"] for h, c in zip(results["hf"], results["convssl"])]
    summary["ratio"] = float(np.median(ratios))
    summary["ratios_per_round"] = ratios
    summary["peak_gflops"] = [p / 1e9 for p in peaks]  # in order: before HF 1, after HF 1 = before convssl 1, ...
    summary["cpu"] = cpu
    summary["vocabulary"] = len(tokenizer)
    summary["settings"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    summary["settings"].update({k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")})
    print(json.dumps(summary, indent=2))
    print(f"convssl / HF real tokens/s, median of the rounds' ratios: {summary['ratio']:.1f}x (target >= 12); "
          f"convssl MFU {100 * summary['convssl']['mfu']:.0f}% (target >= 50%)")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


def compare_tracking(args: argparse.Namespace, data: Path, work: Path) -> None:
    """Step time of the same pretraining with tracking off and on, in alternating rounds."""
    from convssl.tracking.recorder import mlflow_client

    uri = args.tracking_uri or f"sqlite:///{work / 'mlflow' / 'mlflow.db'}"
    mlflow_client(uri).search_experiments()  # the store's one-off creation is not a step's cost
    times: dict[str, list[float]] = {"off": [], "on": []}
    cpu_share: list[float] = []
    for round_ in range(args.rounds):
        for side in ("off", "on") if round_ % 2 == 0 else ("on", "off"):  # drift hits both sides alike
            torch.manual_seed(round_)
            r = run_convssl(data, args.batch, args.steps, 1e-3, args.max_length, work / f"{side}{round_}",
                            log_every=1, track_uri=uri if side == "on" else None)
            gc.collect()
            times[side].append(1000 * r["seconds"] / args.steps)
            if side == "on":
                # CPU time of the tracking thread (opening the run, sending metrics): a bound on its
                # cost that the machine's load does not blur, unlike the step times.
                cpu_share.append(r["tracking_cpu_seconds"] / r["seconds"])
            print(f"round {round_ + 1} tracking {side:3s}: {times[side][-1]:.1f} ms/step"
                  + (f"  (tracking thread CPU {r['tracking_cpu_seconds']:.2f} s = {100 * cpu_share[-1]:.2f}% of "
                     f"the training time)" if side == "on" else ""))
    off, on = float(np.median(times["off"])), float(np.median(times["on"]))
    # Each round's on/off ratio compares two runs made back to back, so the machine's drift
    # between rounds cancels; its median is the figure to quote.
    paired = [b / a for a, b in zip(times["off"], times["on"])]
    summary = {"ms_per_step": {"off": off, "on": on}, "overhead": float(np.median(paired)) - 1,
               "overhead_of_medians": on / off - 1, "per_round_ratio_on_off": paired, "per_round": times,
               "tracking_thread_cpu_share": cpu_share,
               "tracking_uri": uri, "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    print(json.dumps(summary, indent=2))
    print(f"tracking overhead on a pretraining step: {100 * summary['overhead']:+.1f}% (median of the rounds' "
          f"on/off ratios; {100 * summary['overhead_of_medians']:+.1f}% from the medians; target < 2%); "
          f"tracking thread CPU {100 * float(np.median(cpu_share)):.2f}% of the training time (median)")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
