"""The pretraining loop: bf16 autocast, gradient accumulation, evaluation, checkpoints, resume.

Design choices that matter for speed and exactness:
- no `.item()` on the hot path: losses are summed as tensors and read once per log step;
- every source of randomness is seeded or checkpointed (data order, masks, dropout), so a run
  killed and resumed writes the same losses as one that never stopped;
- the model is wrapped in DistributedDataParallel under torchrun, and rank 0 alone writes files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from convssl.runs import prepare_run_dir
from convssl.train import checkpoint as ckpt
from convssl.train.config import PretrainConfig
from convssl.train.data import EVAL_SEED_OFFSET, BatchStream
from convssl.train.distributed import (
    DistInfo,
    all_reduce_mean,
    all_reduce_sum,
    barrier,
    broadcast_object,
    gather_objects,
    init_distributed,
    resolve_device,
)
from convssl.train.metrics import MetricsWriter, truncate_metrics
from convssl.train.optim import build_optimizer, build_scheduler, clipped_step
from convssl.train.precision import warn_if_bf16_slow
from convssl.utils.compute import autocast, seed_everything
from convssl.utils.progress import progress_bar

LOG = logging.getLogger("convssl.train")
INTERRUPTED_EXIT = 130


class TrainingInterrupted(Exception):
    """Ctrl-C (SIGINT) or SIGTERM: a checkpoint was saved; exit with 130 and `--resume` later."""

    def __init__(self, step: int, checkpoint: Path | None) -> None:
        super().__init__(f"interrupted after step {step}; checkpoint {checkpoint}")
        self.step = step
        self.checkpoint = checkpoint


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    tokens_seen: int
    final_dir: Path | None
    best: dict[str, Any] | None
    last_metrics: dict[str, float]
    stopped_early: bool


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """Evaluation must not move any generator, or resumed runs would drift from uninterrupted ones."""
    state = ckpt.capture_rng_state()
    try:
        yield
    finally:
        ckpt.restore_rng_state(state)


class _StopFlag:
    """Set by SIGINT/SIGTERM; the loop finishes the current step, checkpoints and exits."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        self.requested = True
        # A second Ctrl-C stops at once.
        signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not the main thread (e.g. a notebook worker): no graceful stop
                pass

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            with contextlib.suppress(ValueError):
                signal.signal(sig, handler)


class _Window:
    """Sums since the last log step; checkpointed so a resumed run logs the same averages."""

    def __init__(self, losses: list[torch.Tensor], metrics: dict[str, float], steps: int, tokens: int) -> None:
        self.losses, self.metrics, self.steps, self.tokens = losses, metrics, steps, tokens

    @classmethod
    def restore(cls, saved: dict[str, Any] | None, n: int, device: torch.device) -> _Window:
        if not saved:
            return cls([torch.zeros((), device=device) for _ in range(n)], {}, 0, 0)
        losses = [torch.tensor(v, dtype=torch.float32, device=device) for v in saved["losses"]]
        return cls(losses, dict(saved["metrics"]), int(saved["steps"]), int(saved["tokens"]))

    def add(self, losses: list[torch.Tensor], metrics: dict[str, float], tokens: int) -> None:
        for i, loss in enumerate(losses):
            self.losses[i] += loss
        for key, value in metrics.items():
            self.metrics[key] = self.metrics.get(key, 0.0) + value
        self.steps += 1
        self.tokens += tokens

    def to_state(self) -> dict[str, Any]:
        return {"losses": [float(x) for x in self.losses], "metrics": self.metrics, "steps": self.steps, "tokens": self.tokens}


class ObjectivesStep(torch.nn.Module):
    """All objectives' losses of one micro-batch in a single forward, and their weighted sum."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batches: list[Any], objectives: list[Any]) -> tuple[torch.Tensor, list[tuple[Any, Any]]]:
        outputs = [self.model(batch, objective) for batch, objective in zip(batches, objectives)]
        total = sum(objective.config.weight * loss for objective, (loss, _) in zip(objectives, outputs))
        return total, outputs


def model_prompts(objectives: list[Any]) -> dict[str, str]:
    """The sentence-transformers prompts the objectives trained the model with (those of a
    multitask's sub-objectives too); two objectives giving one name different texts is refused."""
    prompts: dict[str, str] = {}
    for objective in objectives:
        for sub in getattr(objective, "tasks", [objective]):
            for name, text in sub.prompts().items():
                if prompts.setdefault(name, text) != text:
                    raise ValueError(f"objectives: two different {name!r} prompts ({prompts[name]!r}, {text!r})")
    return prompts


def check_vocabulary_matches(folder: Path, tokenizer: Any, tokenizer_dir: Path) -> None:
    """Continuing a model on shards tokenised with another vocabulary would train on wrong ids."""
    from transformers import AutoTokenizer

    try:
        own = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError):
        return  # a folder without a tokenizer: nothing to compare with
    data_vocab = tokenizer.get_vocab()
    wrong = [tok for tok, idx in own.get_vocab().items() if data_vocab.get(tok) != idx]
    if wrong:
        raise ValueError(
            f"model.init_from {folder}: its vocabulary differs from the data's tokenizer {tokenizer_dir} "
            f"({len(wrong)} tokens differ, e.g. {wrong[:3]}); prepare the data with the model's tokenizer"
        )


class Trainer:
    """One pretraining run in `run_dir`; `train()` runs or resumes it to `max_steps`."""

    def __init__(self, config: PretrainConfig, run_dir: str | Path, resume: bool = False) -> None:
        config.validate()
        self.config = config
        self.data_dir = Path(config.data)
        self.shards_dir = self.data_dir / "shards"
        if not (self.shards_dir / "manifest.json").exists():
            raise FileNotFoundError(
                f"{self.data_dir}: no shards/manifest.json; pass the folder written by `convssl prepare`"
            )
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.resume = resume
        if config.threads > 0:
            torch.set_num_threads(config.threads)
        requested = config.device if config.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        self.dist: DistInfo = init_distributed(torch.device(requested).type)
        self.device = resolve_device(config.device, self.dist)
        if self.dist.is_main:
            # The one place a run's config is saved (a resumed run keeps the one it started with)
            # and its log file is opened: after validation, so a bad config leaves no folder.
            saved = (self.run_dir / "config.yaml").exists()
            prepare_run_dir(self.run_dir, None if saved else config, log_name="pretrain.log")
            LOG.info("pretraining into %s (%s)", self.run_dir, "resuming" if resume else "new run")
            warn_if_bf16_slow(config.bf16, self.device)
        self._build()

    # -- set-up ----------------------------------------------------------------------------

    def _build(self) -> None:
        from convssl.data.tokenizer import load_tokenizer
        from convssl.models.pretext_model import build_pretext_model
        from convssl.models.reference import resolve_model_path
        from convssl.pretext.base import build_objective

        self.tokenizer = load_tokenizer(self.data_dir / "tokenizer")
        if self.config.model.init_from:
            folder = resolve_model_path(self.config.model.init_from)
            check_vocabulary_matches(folder, self.tokenizer, self.data_dir / "tokenizer")
            self.config.model = dataclasses.replace(self.config.model, init_from=str(folder))
        self.objectives = [build_objective(c, self.tokenizer) for c in self.config.objectives]
        seed_everything(self.config.seed)  # same initial weights on every rank
        self.model = build_pretext_model(self.config.model, self.tokenizer, self.objectives).to(self.device)
        # Dropout differs per rank (as with independent workers) but is reproducible per rank.
        seed_everything(self.config.seed + 1000 * self.dist.rank)
        self.optimizer = build_optimizer(self.model, self.config.lr, self.config.weight_decay, self.config.betas)
        self.scheduler = build_scheduler(
            self.optimizer, self.config.warmup_steps, self.config.max_steps, self.config.schedule
        )
        self.ddp: torch.nn.Module = ObjectivesStep(self.model)
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            # One wrapped forward per micro-batch runs every objective (DDP allows one forward per
            # backward); inputs are moved by the loop; parameters an objective leaves unused
            # (e.g. the MLM head in a contrastive-only step) must be found by DDP.
            self.ddp = DistributedDataParallel(
                ObjectivesStep(self.model), device_ids=None, find_unused_parameters=True
            )
        self.probe = None
        if self.config.probe.path:
            from convssl.train.probe import load_probe_set

            p = self.config.probe
            self.probe = load_probe_set(p.path, p.max_examples, p.test_fraction, self.config.seed)

    def _stream(self, index: int, split: str, consumed: int = 0) -> BatchStream:
        cfg = self.config
        training = split == "train"
        stream = BatchStream(
            self.objectives[index],
            self.shards_dir,
            split,
            cfg.batch_size,
            seed=cfg.seed + (0 if training else EVAL_SEED_OFFSET),
            index=index,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            mode=cfg.data_parallel,
            loop=training,
            prefetch=cfg.prefetch if training else 0,
        )
        stream.skip(consumed)
        return stream

    @property
    def _autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.config.bf16, self.device.type)

    # -- state -----------------------------------------------------------------------------

    def _fresh_state(self) -> dict[str, Any]:
        return {
            "step": 0,
            "tokens_seen": 0,
            "elapsed": 0.0,
            "consumed": [0] * len(self.objectives),
            "best": None,
            "evals_without_improvement": 0,
            "last_eval": {},
            "window": None,
        }

    def _restore(self) -> dict[str, Any]:
        if self.dist.is_main:
            ckpt.remove_stale_temporaries(self.ckpt_dir)
        barrier(self.dist)
        latest = ckpt.latest_checkpoint(self.ckpt_dir)
        if latest is None:
            if self.resume:
                LOG.info("no checkpoint in %s: starting from step 0", self.ckpt_dir)
            return self._fresh_state()
        if not self.resume:
            raise FileExistsError(
                f"{self.run_dir} already holds checkpoints (latest {latest.name}); "
                "pass --resume to continue it or choose another --out"
            )
        saved = ckpt.load_checkpoint(latest, self.model, self.optimizer, self.scheduler, rank=self.dist.rank)
        if saved.get("world_size", 1) != self.dist.world_size:
            raise ValueError(
                f"{latest}: saved by {saved.get('world_size')} processes, resumed with {self.dist.world_size}; "
                "exact resume needs the same number"
            )
        LOG.info("resumed %s at step %d", self.run_dir, saved["step"])
        state = self._fresh_state()
        state.update({k: saved[k] for k in state if k in saved})
        return state

    def _checkpoint(self, state: dict[str, Any], window: _Window) -> Path:
        rng = gather_objects(ckpt.capture_rng_state(), self.dist)
        state = dict(state, window=window.to_state())
        path = self.ckpt_dir / f"step-{state['step']}"
        if self.dist.is_main:
            trainer_state = dict(state, world_size=self.dist.world_size, config=dataclasses.asdict(self.config))
            path = ckpt.save_checkpoint(
                self.ckpt_dir,
                state["step"],
                lambda out: self._save_hf(out, state),
                self.model,
                self.optimizer,
                self.scheduler,
                trainer_state,
                rng,
            )
            best_step = state["best"]["step"] if state["best"] else None
            ckpt.apply_retention(self.ckpt_dir, self.config.keep_last, best_step)
        barrier(self.dist)
        return path

    def _card(self, state: dict[str, Any]) -> dict[str, Any]:
        manifest_sources = None
        with contextlib.suppress(Exception):
            from convssl.data.shards import read_manifest

            manifest = read_manifest(self.shards_dir)
            manifest_sources = manifest.get("sources")
        return {
            "data": {"folder": str(self.data_dir), "sources": manifest_sources},
            "objectives": [dataclasses.asdict(o) for o in self.config.objectives],
            "steps": state["step"],
            "tokens_seen": state["tokens_seen"],
            "metrics": state.get("last_eval") or {},
            "batch_size": self.config.batch_size * self.config.grad_accum,
            "lr": self.config.lr,
            "processes": self.dist.world_size,
        }

    def _save_hf(self, out: Path, state: dict[str, Any]) -> None:
        from convssl.models.pretext_model import save_hf_folder

        save_hf_folder(self.model, self.tokenizer, out, self._card(state), prompts=model_prompts(self.objectives))

    # -- steps -----------------------------------------------------------------------------

    def _train_step(self, streams: list[BatchStream]) -> tuple[list[torch.Tensor], dict[str, float], int]:
        """One optimizer step; returns per-objective losses (tensors), summed metrics, tokens."""
        cfg = self.config
        losses = [torch.zeros((), device=self.device) for _ in self.objectives]
        metric_sums: dict[str, float] = {}
        tokens = 0
        for micro in range(cfg.grad_accum):
            last = micro == cfg.grad_accum - 1
            sync = contextlib.nullcontext() if (last or not self.dist.enabled) else self.ddp.no_sync()
            with sync:
                batches = [next(stream).to(self.device, non_blocking=True) for stream in streams]
                tokens += sum(b.real_tokens for b in batches)
                with self._autocast:
                    total, outputs = self.ddp(batches, self.objectives)
                for i, (objective, (loss, metrics)) in enumerate(zip(self.objectives, outputs)):
                    losses[i] += loss.detach().float()
                    for key, value in metrics.items():
                        if key == "loss":
                            continue  # logged as loss.<objective> from the tensor
                        name = f"{objective.name}.{key}"
                        metric_sums[name] = metric_sums.get(name, 0.0) + float(value)
                (total / cfg.grad_accum).backward()
        clipped_step(self.optimizer, cfg.clip_norm)
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        scale = 1.0 / cfg.grad_accum
        return [x * scale for x in losses], {k: v * scale for k, v in metric_sums.items()}, tokens

    @torch.no_grad()
    def evaluate(self, step: int | None = None) -> dict[str, float]:
        """Validation pretext loss and metrics per objective, plus the probe when configured."""
        cfg = self.config
        out: dict[str, float] = {}
        self.model.eval()
        try:
            with preserved_rng():
                total = 0.0
                for i, objective in enumerate(self.objectives):
                    stream = self._stream(i, "validation")
                    sums: dict[str, float] = {}
                    weight = 0
                    for _, batch in zip(range(cfg.eval_batches), stream):
                        batch = batch.to(self.device)
                        with self._autocast:
                            loss, metrics = self.model(batch, objective)
                        n = max(1, batch.size)
                        weight += n
                        sums["loss"] = sums.get("loss", 0.0) + float(loss) * n
                        for key, value in metrics.items():
                            if key != "loss":  # the loss is taken from the tensor above
                                sums[key] = sums.get(key, 0.0) + float(value) * n
                    if weight == 0:
                        continue
                    for key, value in sums.items():
                        out[f"val.{objective.name}.{key}"] = value / weight
                    total += objective.config.weight * sums["loss"] / weight
                if out:
                    out["val.loss"] = total
        finally:
            self.model.train()
        out = all_reduce_mean(out, self.dist, self.device)
        every = cfg.probe.every
        if self.probe is not None and (step is None or every <= 0 or step % every == 0 or step == cfg.max_steps):
            accuracy = None
            if self.dist.is_main:
                from convssl.train.probe import probe_accuracy, warn_if_probe_at_chance

                with preserved_rng():
                    accuracy = probe_accuracy(
                        self.model.trunk, self.tokenizer, self.probe, self.device, cfg.probe.max_length, cfg.bf16
                    )
                warn_if_probe_at_chance(accuracy, self.probe.test_labels, step)
            out["val.probe_accuracy"] = broadcast_object(accuracy, self.dist)
        return out

    def _is_better(self, metrics: dict[str, float], best: dict[str, Any] | None) -> tuple[str, float, bool] | None:
        if self.probe is not None and "val.probe_accuracy" not in metrics:
            return None  # the probe runs every `probe.every` steps; judge only those evaluations
        if "val.probe_accuracy" in metrics:
            name, value, higher = "val.probe_accuracy", metrics["val.probe_accuracy"], True
        elif "val.loss" in metrics:
            name, value, higher = "val.loss", metrics["val.loss"], False
        else:
            return None
        if best is None or best.get("metric") != name:
            return name, value, True
        improved = value > best["value"] if higher else value < best["value"]
        return name, value, improved

    # -- main loop -------------------------------------------------------------------------

    def train(self) -> TrainResult:
        cfg = self.config
        state = self._restore()
        main = self.dist.is_main
        metrics_path = self.run_dir / "metrics.jsonl"
        if main:
            truncate_metrics(metrics_path, state["step"])
        writer = MetricsWriter(self.run_dir, cfg.tensorboard) if main else None
        streams = [self._stream(i, "train", state["consumed"][i]) for i in range(len(self.objectives))]
        stop = _StopFlag()
        stop.install()
        bar = self._progress(state["step"])
        self.model.train()
        stopped_early = False
        window = _Window.restore(state.pop("window", None), len(self.objectives), self.device)
        window_start = time.perf_counter()
        last_metrics: dict[str, float] = {}
        try:
            while state["step"] < cfg.max_steps:
                losses, metrics, tokens = self._train_step(streams)
                state["step"] += 1
                state["consumed"] = [s.consumed for s in streams]
                step = state["step"]
                window.add(losses, metrics, tokens)
                if step % cfg.log_every == 0 or step == cfg.max_steps:
                    last_metrics = self._close_window(state, window, time.perf_counter() - window_start, writer, bar)
                    window = _Window.restore(None, len(self.objectives), self.device)
                    window_start = time.perf_counter()
                if bar is not None:
                    bar.update(1)
                saved_now = False
                if cfg.eval_every > 0 and (step % cfg.eval_every == 0 or step == cfg.max_steps):
                    started = time.perf_counter()
                    evaluation = self.evaluate(step)
                    state["last_eval"] = evaluation
                    if writer is not None and evaluation:
                        writer.write({"step": step, **evaluation})
                        LOG.info("step %d: evaluation %s", step,
                                 ", ".join(f"{k} {v:.4g}" for k, v in evaluation.items() if isinstance(v, float)))
                    verdict = self._is_better(evaluation, state["best"])
                    if verdict is not None:
                        name, value, improved = verdict
                        if improved:
                            state["best"] = {"step": step, "metric": name, "value": value}
                            state["evals_without_improvement"] = 0
                            self._checkpoint(state, window)
                            saved_now = True
                            if main:
                                ckpt.write_best(self.ckpt_dir, step, name, value)
                        else:
                            state["evals_without_improvement"] += 1
                    patience = cfg.probe.patience
                    if self.probe is not None and patience > 0 and state["evals_without_improvement"] >= patience:
                        LOG.info("probe accuracy did not improve for %d evaluations: stopping", patience)
                        stopped_early = True
                    window_start += time.perf_counter() - started  # evaluation time is not training speed
                interrupted = self._stop_requested(stop)
                due = cfg.checkpoint_every > 0 and step % cfg.checkpoint_every == 0
                if not saved_now and (due or interrupted or stopped_early):
                    started = time.perf_counter()
                    self._checkpoint(state, window)
                    window_start += time.perf_counter() - started  # nor is writing checkpoints
                if interrupted:
                    raise TrainingInterrupted(step, self.ckpt_dir / f"step-{step}")
                if stopped_early:
                    break
        finally:
            stop.uninstall()
            if bar is not None:
                bar.close()
            if writer is not None:
                writer.close()
        final_dir = self._finish(state) if main else None
        if main:
            LOG.info("finished at step %d (%d tokens seen): model in %s", state["step"], state["tokens_seen"], final_dir)
        barrier(self.dist)
        return TrainResult(
            self.run_dir, state["step"], state["tokens_seen"], final_dir, state["best"], last_metrics, stopped_early
        )

    def _close_window(self, state: dict[str, Any], window: _Window, seconds: float, writer: Any,
                      bar: Any) -> dict[str, Any]:
        """The metrics record of the steps since the last one: written, logged and shown."""
        step = state["step"]
        global_tokens = int(all_reduce_sum(window.tokens, self.dist, self.device))
        state["tokens_seen"] += global_tokens
        state["elapsed"] += seconds
        record = self._log_record(step, window.losses, window.metrics, window.steps)
        record.update(lr=self.scheduler.get_last_lr()[0], real_tokens=state["tokens_seen"],
                      tokens_per_s=global_tokens / max(seconds, 1e-9), elapsed=state["elapsed"])
        if writer is not None:
            writer.write(record)
            LOG.info("step %d: loss %.4f, lr %.3g, %.0f tokens/s", step, record["loss"], record["lr"],
                     record["tokens_per_s"])
        if bar is not None:
            bar.set_postfix(loss=f"{record['loss']:.4f}", tok_s=f"{record['tokens_per_s']:.0f}")
        return record

    def _stop_requested(self, stop: _StopFlag) -> bool:
        """Ranks agree on stopping (torchrun signals every rank, but not at the same instant)."""
        if not self.dist.enabled:
            return stop.requested
        return all_reduce_sum(1.0 if stop.requested else 0.0, self.dist, self.device) > 0

    def _log_record(
        self, step: int, losses: list[torch.Tensor], metrics: dict[str, float], steps: int
    ) -> dict[str, Any]:
        # The only device-to-host sync of the window: all losses in one transfer.
        values = (torch.stack(losses) / steps).tolist()
        flat = {f"loss.{o.name}": v for o, v in zip(self.objectives, values)}
        flat.update({k: v / steps for k, v in metrics.items()})
        flat = all_reduce_mean(flat, self.dist, self.device)
        total = sum(o.config.weight * flat[f"loss.{o.name}"] for o in self.objectives)
        if not math.isfinite(total):
            raise FloatingPointError(f"step {step}: the loss is {total}; lower lr or check the data")
        return {"step": step, "loss": total, **flat}

    def _progress(self, initial: int) -> Any:
        if not (self.dist.is_main and self.config.progress):
            return None
        return progress_bar(self.config.max_steps, "pretraining", unit="step", leave=True, initial=initial,
                            mininterval=0.1)

    def _finish(self, state: dict[str, Any]) -> Path:
        """`RUN/final/` (HF folder, written atomically), the loss plot and a summary."""
        import shutil

        from convssl.runs import write_json_atomic

        final = self.run_dir / "final"
        tmp = self.run_dir / ".tmp-final"
        if tmp.exists():
            shutil.rmtree(tmp)
        self._save_hf(tmp, state)
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        if self.config.plot:
            from convssl.train.plots import plot_loss

            plot_loss(self.run_dir / "metrics.jsonl", self.run_dir / "loss.png")
        write_json_atomic(
            self.run_dir / "summary.json",
            {
                "steps": state["step"],
                "tokens_seen": state["tokens_seen"],
                "elapsed_s": state["elapsed"],
                "best": state["best"],
                "last_eval": state["last_eval"],
                "final": str(final),
            },
        )
        return final


def pretrain(config: PretrainConfig, run_dir: str | Path, resume: bool = False) -> TrainResult:
    """Run (or resume) a pretraining run; raises TrainingInterrupted after a Ctrl-C checkpoint."""
    return Trainer(config, run_dir, resume=resume).train()
