"""Run every (representation x task x mode) of an EvaluateConfig and collect report rows.

Representations are the models under test, extra `--baseline` folders, TF-IDF, and one seeded
random-init copy per model architecture. Each row carries its own wall-clock seconds; the time to
embed a task's texts is recorded once per (representation, task) as `features_seconds`.
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from convssl.config import to_dict
from convssl.data.dialogue import IntentExample
from convssl.evaluate import intent as intent_mod
from convssl.evaluate import oos as oos_mod
from convssl.evaluate.baselines import random_init_encoder, save_random_init, tfidf_baseline
from convssl.evaluate.config import EvaluateConfig
from convssl.evaluate.embeddings import (
    EncoderRepresentation,
    Representation,
    display_name,
    load_encoder_representation,
)
from convssl.evaluate.tasks import (
    IntentData,
    TaskError,
    TaskSpec,
    k_per_class,
    load_dialogues,
    load_intent_data,
    parse_task,
    stratified_subsample,
)
from convssl.models.encoder import folder_fingerprint
from convssl.models.reference import resolve_model_path
from convssl.runs import prepare_run_dir
from convssl.utils.chance import UNDERTRAINED_HINT, chance_accuracy, chance_warning

LOG = logging.getLogger("convssl.evaluate")


@dataclass
class Row:
    model: str
    kind: str
    task: str
    task_kind: str
    mode: str
    metrics: dict[str, Any]
    seconds: float
    note: str = ""
    warning: str = ""  # set when the row's score is at chance level (convssl.utils.chance)


@dataclass
class EvaluationResult:
    config: EvaluateConfig
    rows: list[Row] = field(default_factory=list)
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    representations: list[dict[str, Any]] = field(default_factory=list)
    # Arrays for plots only (score histograms, reliability bins); not written to report.json.
    plot_data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "config": to_dict(self.config),
            "environment": {"python": platform.python_version(), "machine": platform.machine()},
            "representations": self.representations,
            "tasks": self.tasks,
            "rows": [asdict(r) for r in self.rows],
        }


class Runner:
    def __init__(self, config: EvaluateConfig, out_dir: Path) -> None:
        config.validate()
        self.config = config
        self.out_dir = out_dir
        self.specs = [parse_task(t) for t in config.tasks]
        seen: dict[str, int] = {}
        for spec in self.specs:  # two tasks on same-named files must not share report rows
            seen[spec.name] = seen.get(spec.name, 0) + 1
            if seen[spec.name] > 1:
                spec.label = f"{spec.name}#{seen[spec.name]}"
        if not config.models:
            raise TaskError("no model to evaluate: pass --model PATH (a convssl run folder or an HF folder)")
        if not self.specs:
            raise TaskError("no task: pass --task intent:PATH, oos:PATH, response:PATH or ppl:PATH")
        for model in [*config.models, *config.baselines]:
            resolve_model_path(model)  # a wrong path fails here, before the output folder exists
        self.result = EvaluationResult(config)
        self._reps: list[Representation] | None = None
        # Fully fine-tuned classifiers by (representation, data path): the intent and the oos task
        # of one data set share the training run (same in-scope train split, same validation).
        self._finetuned: dict[tuple[str, str], Any] = {}
        self._random_folders: dict[str, Path] = {}
        # (chance accuracy, test examples) by task name, for the at-chance warnings of its rows
        self._chance: dict[str, tuple[float, int]] = {}

    # ---- representations -------------------------------------------------------------------
    def representations(self) -> list[Representation]:
        """Models, then extra baselines, then random-init copies, then TF-IDF (built once)."""
        if self._reps is not None:
            return self._reps
        c = self.config
        reps: list[Representation] = []
        kw = dict(pooling=c.pooling, max_length=c.max_length, batch_size=c.batch_size, normalize=c.normalize, bf16=c.bf16)
        names: set[str] = set()

        def unique(name: str) -> str:
            base, i = name, 2
            while name in names:
                name, i = f"{base}#{i}", i + 1
            names.add(name)
            return name

        for path in c.models:
            reps.append(load_encoder_representation(path, unique(display_name(path)), "model", **kw))
        for path in c.baselines:
            reps.append(load_encoder_representation(path, unique(display_name(path)), "baseline", **kw))
        if c.random_baseline:
            seen: set[str] = set()
            for path in c.models:
                arch = (resolve_model_path(path) / "config.json").read_text(encoding="utf-8")
                if arch in seen:
                    continue
                seen.add(arch)
                name = unique(f"random-init({display_name(path)})")
                reps.append(random_init_encoder(path, seed=c.seed, name=name, **kw))
        if c.cache_dir:
            for rep in reps:
                if isinstance(rep, EncoderRepresentation):
                    rep.use_disk_cache(c.cache_dir, c.seed if rep.kind == "random-init" else None)
        if c.tfidf_baseline:
            reps.append(tfidf_baseline())
        self.result.representations = [{"name": r.name, "kind": r.kind, "path": r.path} for r in reps]
        self._reps = reps
        return reps

    # ---- driver ----------------------------------------------------------------------------
    def run(self) -> EvaluationResult:
        handlers: dict[str, Callable[[TaskSpec], None]] = {
            "intent": self.run_intent, "oos": self.run_oos, "response": self.run_response, "ppl": self.run_ppl,
        }
        for spec in self.specs:
            LOG.info("task %s (%s)", spec.name, spec.path)
            handlers[spec.kind](spec)
        return self.result

    def _add(self, rep: Representation, spec: TaskSpec, mode: str, metrics: dict[str, Any], seconds: float,
             note: str = "") -> None:
        warning = self._chance_warning(spec, metrics) or ""
        row = Row(rep.name, rep.kind, spec.name, spec.kind, mode, metrics, round(seconds, 3), note, warning)
        self.result.rows.append(row)
        main = {k: v for k, v in metrics.items() if isinstance(v, float)}
        LOG.info("%s | %s | %s | %s (%.1fs)", rep.name, spec.name, mode,
                 ", ".join(f"{k}={v:.4f}" for k, v in list(main.items())[:4]), seconds)
        if warning:
            LOG.warning("%s | %s | %s: %s", rep.name, spec.name, mode, warning)

    def _chance_warning(self, spec: TaskSpec, metrics: dict[str, Any]) -> str | None:
        """The row's headline score against guessing: intent accuracy, OOS closed-set accuracy,
        response recall@1 (whose chance is 1 / candidates)."""
        if "recall@1" in metrics and "chance_recall@1" in metrics:
            return chance_warning("recall@1", metrics["recall@1"], metrics["chance_recall@1"], metrics["pairs"],
                                  UNDERTRAINED_HINT)
        key = {"intent": "accuracy", "oos": "closed_set_accuracy"}.get(spec.kind)
        if key in metrics and spec.name in self._chance:
            chance, n = self._chance[spec.name]
            return chance_warning(key.replace("_", "-"), metrics[key], chance, n, UNDERTRAINED_HINT)
        return None

    def _features(self, rep: Representation, fit_texts: list[str], *texts_lists: list[str]) -> tuple[list[Any], float]:
        start = time.perf_counter()
        rep.fit(fit_texts)
        feats = [rep.features(texts) for texts in texts_lists]
        return feats, time.perf_counter() - start

    # ---- intent ----------------------------------------------------------------------------
    def _intent_data(self, spec: TaskSpec, drop_oos: bool) -> IntentData:
        data = load_intent_data(spec)
        c = self.config
        oos = c.oos.oos_label
        if drop_oos:
            data.train = [e for e in data.train if e.label != oos]
            data.val = [e for e in data.val if e.label != oos]
            data.test = [e for e in data.test if e.label != oos]
            data.labels = sorted({e.label for e in data.train})
        data.train = stratified_subsample(data.train, c.max_train, c.seed)
        data.test = stratified_subsample(data.test, c.max_test, c.seed + 1)
        if c.max_test is not None:
            data.val = stratified_subsample(data.val, c.max_test, c.seed + 2)
        in_scope = [e.label for e in data.test if e.label != oos]
        self._chance[spec.name] = (chance_accuracy(in_scope), len(in_scope))
        self.result.tasks[spec.name] = {
            "kind": spec.kind, "path": spec.path, "train": len(data.train), "validation": len(data.val),
            "test": len(data.test), "labels": len(data.labels), "rejected_records": data.rejected,
        }
        return data

    def run_intent(self, spec: TaskSpec) -> None:
        c = self.config
        data = self._intent_data(spec, drop_oos=True)
        ytr = intent_mod.encode_labels([e.label for e in data.train], data.labels)
        yte = intent_mod.encode_labels([e.label for e in data.test], data.labels)
        n = len(data.labels)
        train_texts = [e.text for e in data.train]
        test_texts = [e.text for e in data.test]
        for rep in self.representations():
            (Xtr, Xte), feat_s = self._features(rep, train_texts, train_texts, test_texts)
            s = c.intent
            extra = {"features_seconds": round(feat_s, 3)}
            if "probe" in s.modes:
                t0 = time.perf_counter()
                metrics, pred, proba = intent_mod.probe_eval(Xtr, ytr, Xte, yte, n, s.C, s.max_iter, c.oos.ece_bins)
                metrics["confusions"] = intent_mod.top_confusions(yte, pred, data.labels, s.top_confusions)
                self._add(rep, spec, "probe", {**metrics, **extra, "C": s.C}, time.perf_counter() - t0)
            if "knn" in s.modes:
                t0 = time.perf_counter()
                pred = intent_mod.knn_predict(Xtr, ytr, Xte, n, k=s.knn_k)
                self._add(rep, spec, f"knn-{s.knn_k}", {**intent_mod.classification_metrics(yte, pred), **extra},
                          time.perf_counter() - t0)
            if "centroid" in s.modes:
                t0 = time.perf_counter()
                pred = intent_mod.centroid_scores(Xtr, ytr, Xte, n).argmax(axis=1)
                self._add(rep, spec, "centroid", {**intent_mod.classification_metrics(yte, pred), **extra},
                          time.perf_counter() - t0)
            if "kshot" in s.modes:
                seeds = [c.seed + i for i in range(s.seeds)]
                for k in s.kshot:
                    t0 = time.perf_counter()
                    metrics = intent_mod.kshot_eval(Xtr, ytr, Xte, yte, n, k, seeds, s.C, s.max_iter)
                    self._add(rep, spec, f"kshot-{k}", {**metrics, **extra}, time.perf_counter() - t0)
            if isinstance(rep, EncoderRepresentation):
                if "finetune" in s.modes:
                    self._finetune(rep, spec, data)
                for mode, method in (("setfit", "setfit"), ("finetune_kshot", "full")):
                    if mode in s.modes:
                        self._few_shot(rep, spec, data, mode, method)

    # ---- trained modes (through convssl.downstream, the code of `convssl finetune`) ---------
    def _finetune_config(self, **fields: Any) -> Any:
        from convssl.config import from_dict
        from convssl.downstream.config import FinetuneConfig

        c = self.config
        values = {"seed": c.seed, "pooling": c.pooling, "oos_label": c.oos.oos_label, **c.intent.finetune, **fields}
        return from_dict(FinetuneConfig, values, where="intent.finetune")

    def _model_folder(self, rep: EncoderRepresentation) -> Path | str | None:
        """The folder to train from; a random-init baseline is saved once (its seeded weights)."""
        if rep.kind != "random-init":
            return rep.path
        if rep.name not in self._random_folders:
            self._random_folders[rep.name] = save_random_init(rep, self.out_dir / "finetuned" / _safe(f"{rep.name}-init"))
        return self._random_folders[rep.name]

    def _finetuned_classifier(self, rep: EncoderRepresentation, spec: TaskSpec) -> tuple[Any, float]:
        """Fine-tune on the in-scope train split, early-stop and calibrate the OOS threshold on the
        validation split (with its out-of-scope examples, when it has some); cached per data set.
        The training seconds are returned to the first caller only, so no time is counted twice."""
        from convssl.downstream.finetune import finetune_intent

        key = (rep.name, spec.path)
        if key not in self._finetuned:
            c = self.config
            out_dir = self.out_dir / "finetuned" / _safe(f"{rep.name}-{_data_name(spec.path)}")
            identity = self._run_identity(rep, spec)
            if (reused := _finished_run(out_dir / RUN_KEY_FILE, identity)) is not None:
                from convssl.downstream.intent_classifier import IntentClassifier

                LOG.info("%s | %s | reusing the fine-tuned classifier in %s", rep.name, spec.name, out_dir)
                self._finetuned[key] = (IntentClassifier.load(out_dir), out_dir)
                return self._finetuned[key][0], float(reused["seconds"])
            data = load_intent_data(spec)
            train = stratified_subsample(data.train, c.max_train, c.seed)
            val = stratified_subsample(data.val, c.max_test, c.seed + 2) if c.max_test is not None else data.val
            t0 = time.perf_counter()
            (out_dir / RUN_KEY_FILE).unlink(missing_ok=True)  # the folder is about to be overwritten
            classifier = finetune_intent(self._model_folder(rep), train, val or None, self._finetune_config(), out_dir)
            seconds = time.perf_counter() - t0
            _record_run(out_dir / RUN_KEY_FILE, identity, {"seconds": seconds})
            self._finetuned[key] = (classifier, out_dir)
            return classifier, seconds
        return self._finetuned[key][0], 0.0

    def _run_identity(self, rep: EncoderRepresentation, spec: TaskSpec, **extra: Any) -> dict[str, Any]:
        """What decides a training run's result: a finished run with the same identity is reused
        when an interrupted evaluation is started again with the same --out."""
        c = self.config
        k = extra.pop("k", None)
        return {"model": rep.name, "kind": rep.kind, "weights": folder_fingerprint(rep.path), "task": spec.path,
                "seed": c.seed, "max_train": c.max_train, "max_test": c.max_test, "k": k,
                "finetune": to_dict(self._finetune_config(**extra))}

    def _closed_set(self, classifier: Any, examples: list[IntentExample], vocab: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(gold ids, predicted ids, softmax probabilities) over the in-scope labels, no rejection."""
        from convssl.downstream.intent_classifier import softmax

        logits, _ = classifier.logits_and_scores([e.text for e in examples])
        probs = softmax(logits)
        pred = intent_mod.encode_labels([classifier.labels[i] for i in probs.argmax(axis=1)], vocab)
        return intent_mod.encode_labels([e.label for e in examples], vocab), pred, probs

    def _finetune(self, rep: EncoderRepresentation, spec: TaskSpec, data: IntentData) -> None:
        """Full fine-tuning on the whole train split."""
        classifier, seconds = self._finetuned_classifier(rep, spec)
        t0 = time.perf_counter()
        yte, pred, probs = self._closed_set(classifier, data.test, data.labels)
        metrics: dict[str, Any] = intent_mod.classification_metrics(yte, pred)
        rel = intent_mod.reliability(probs.max(axis=1), pred == yte, self.config.oos.ece_bins)
        out_dir = self._finetuned[(rep.name, spec.path)][1]
        metrics.update(ece=rel["ece"], classifier=str(out_dir), epochs_run=len(classifier_history(out_dir)))
        self._add(rep, spec, "finetune", metrics, seconds + time.perf_counter() - t0)

    def _few_shot(self, rep: EncoderRepresentation, spec: TaskSpec, data: IntentData, mode: str, method: str) -> None:
        """k examples per class (the frozen k-shot probes' draws), one training run per seed, scored
        on the full test set; no validation split (k-shot has none): fixed epochs, no threshold."""
        import tempfile

        from convssl.downstream.finetune import finetune_intent

        c = self.config
        seeds = [c.seed + i for i in range(c.intent.seeds)]
        y_train = intent_mod.encode_labels([e.label for e in data.train], data.labels).tolist()
        for k in c.intent.few_shot:
            seconds = 0.0
            runs = []
            for seed in seeds:
                fields = {"method": method, "seed": seed, "val_fraction": 0.0, "k_shot": 0}
                identity = self._run_identity(rep, spec, k=k, **fields)
                record = self.out_dir / "fewshot" / _safe(f"{rep.name}-{_data_name(spec.path)}-{mode}-{k}-seed{seed}.json")
                if (done := _finished_run(record, identity)) is None:
                    t0 = time.perf_counter()
                    train = [data.train[i] for i in k_per_class(y_train, k, seed)]
                    with tempfile.TemporaryDirectory(prefix="convssl-fewshot-") as tmp:
                        classifier = finetune_intent(self._model_folder(rep), train, None,
                                                     self._finetune_config(**fields), tmp)
                        yte, pred, _ = self._closed_set(classifier, data.test, data.labels)
                    done = {"metrics": intent_mod.classification_metrics(yte, pred), "seconds": time.perf_counter() - t0}
                    _record_run(record, identity, done)
                else:
                    LOG.info("%s | %s | %s-%d seed %d: reusing %s", rep.name, spec.name, mode, k, seed, record)
                runs.append(done["metrics"])
                seconds += float(done["seconds"])
            self._add(rep, spec, f"{mode}-{k}", {"k": k, "seeds": seeds, **intent_mod.mean_std(runs), "method": method},
                      seconds)

    # ---- out-of-scope ----------------------------------------------------------------------
    def run_oos(self, spec: TaskSpec) -> None:
        c = self.config
        oos = c.oos.oos_label
        data = self._intent_data(spec, drop_oos=False)
        train = data.train if c.oos.train_on_oos else [e for e in data.train if e.label != oos]
        val = data.val
        if not any(e.label == oos for e in data.test):
            raise TaskError(f"task {spec.name}: the test split has no '{oos}' examples (set oos.oos_label)")
        if not any(e.label != oos for e in val) or not any(e.label == oos for e in val):
            raise TaskError(
                f"task {spec.name}: the threshold is calibrated on validation data only, which needs in-scope and "
                f"'{oos}' examples in a validation split (CLINC150: keys val and oos_val)"
            )
        labels = sorted({e.label for e in train})
        self.result.tasks[spec.name]["labels"] = len(labels)
        oos_index = labels.index(oos) if oos in labels else -1
        for rep in self.representations():
            self._oos_one(rep, spec, train, val, data.test, labels, oos_index)
            if "finetune" in c.intent.modes and isinstance(rep, EncoderRepresentation):
                self._oos_finetuned(rep, spec, data.test)

    def _oos_finetuned(self, rep: EncoderRepresentation, spec: TaskSpec, test: list[IntentExample]) -> None:
        """The fine-tuned classifier with the threshold it calibrated on validation data: what
        `convssl finetune` ships and `convssl serve` applies."""
        classifier, seconds = self._finetuned_classifier(rep, spec)
        t0 = time.perf_counter()
        oos = self.config.oos.oos_label
        is_oos = np.array([e.label == oos for e in test])
        logits, scores = classifier.logits_and_scores([e.text for e in test])
        predicted = np.array(classifier.labels, dtype=object)[logits.argmax(axis=1)]
        correct = (predicted == np.array([e.label for e in test], dtype=object)) & ~is_oos
        threshold = classifier.threshold if classifier.threshold is not None else float("-inf")
        metrics = oos_mod.oos_metrics(np.asarray(scores, dtype=np.float64), is_oos, correct, threshold)
        from convssl.downstream.intent_classifier import softmax

        confidence = softmax(logits).max(axis=1)
        bins = self.config.oos.ece_bins
        metrics.update(ece=intent_mod.reliability(confidence[~is_oos], correct[~is_oos], bins)["ece"],
                       ece_with_oos=intent_mod.reliability(confidence, correct, bins)["ece"])
        metrics.update(closed_set_accuracy=float(correct[~is_oos].mean()), calibrated_on="validation",
                       score=classifier.meta.score, rule=self._finetune_config().calibration)
        self._add(rep, spec, f"oos-finetune-{classifier.meta.score}", metrics, seconds + time.perf_counter() - t0)

    def _oos_one(self, rep: Representation, spec: TaskSpec, train: list[IntentExample], val: list[IntentExample],
                 test: list[IntentExample], labels: list[str], oos_index: int) -> None:
        c = self.config
        oos = c.oos.oos_label
        n = len(labels)
        texts = [[e.text for e in part] for part in (train, val, test)]
        (Xtr, Xva, Xte), feat_s = self._features(rep, texts[0], *texts)
        ytr = intent_mod.encode_labels([e.label for e in train], labels)
        t0 = time.perf_counter()
        clf = intent_mod.fit_probe(Xtr, ytr, C=c.intent.C, max_iter=c.intent.max_iter)
        probe_s = time.perf_counter() - t0
        # Scores come from in-scope classes only, so a trained 'oos' class does not count as confidence.
        in_cols = [i for i in range(n) if i != oos_index]
        in_train = ytr != oos_index
        parts = {}
        for name, X, exs in (("val", Xva, val), ("test", Xte, test)):
            proba = intent_mod.probe_proba(clf, X, n)
            is_oos = np.array([e.label == oos for e in exs])
            y = intent_mod.encode_labels([e.label for e in exs], labels)
            pred_in = np.array(in_cols)[proba[:, in_cols].argmax(axis=1)]
            parts[name] = {"X": X, "proba": proba, "is_oos": is_oos, "correct": (pred_in == y) & ~is_oos}
        # Calibration of the closed-set classifier: on in-scope test texts, and with OOS texts as errors.
        te = parts["test"]
        conf = te["proba"][:, in_cols].max(axis=1)
        rel_in = intent_mod.reliability(conf[~te["is_oos"]], te["correct"][~te["is_oos"]], c.oos.ece_bins)
        rel_all = intent_mod.reliability(conf, te["correct"], c.oos.ece_bins)
        self.result.plot_data.setdefault("reliability", {})[(rep.name, spec.name)] = rel_in["bins"]
        maha = None
        for score in c.oos.scores:
            if score == "mahalanobis" and not isinstance(Xtr, np.ndarray):
                continue  # sparse TF-IDF features: no full covariance in 10^4+ dimensions
            t0 = time.perf_counter()
            if score == "mahalanobis" and maha is None:
                maha = oos_mod.Mahalanobis(Xtr[in_train], ytr[in_train], n)
            s_val, s_te = (
                oos_mod.compute_scores(score, parts[p]["proba"][:, in_cols], parts[p]["X"], Xtr[in_train],
                                       ytr[in_train], n, maha)
                for p in ("val", "test")
            )
            threshold = oos_mod.choose_threshold(s_val, parts["val"]["is_oos"], parts["val"]["correct"], c.oos.calibrate)
            metrics = oos_mod.oos_metrics(s_te, te["is_oos"], te["correct"], threshold)
            metrics.update(ece=rel_in["ece"], ece_with_oos=rel_all["ece"], calibrated_on="validation",
                           closed_set_accuracy=float(te["correct"][~te["is_oos"]].mean()),
                           rule=c.oos.calibrate, features_seconds=round(feat_s, 3))
            self.result.plot_data.setdefault("oos_scores", {})[(rep.name, spec.name, score)] = {
                "in_scope": s_te[~te["is_oos"]], "oos": s_te[te["is_oos"]], "threshold": threshold,
            }
            self._add(rep, spec, f"oos-{score}", metrics, time.perf_counter() - t0 + probe_s)

    # ---- response selection ----------------------------------------------------------------
    def run_response(self, spec: TaskSpec) -> None:
        from convssl.evaluate.response_selection import make_pairs, recall_at_k

        c = self.config
        dialogues, rejected = load_dialogues(spec)
        pairs = make_pairs(dialogues, c.response.context_turns, c.response.max_pairs, c.seed)
        if len(pairs) < 2:
            raise TaskError(f"task {spec.name}: fewer than two context/response pairs")
        self.result.tasks[spec.name] = {"kind": spec.kind, "path": spec.path, "dialogues": len(dialogues),
                                        "pairs": len(pairs), "rejected_records": rejected,
                                        "context_turns": c.response.context_turns}
        contexts = [p[0] for p in pairs]
        responses = [p[1] for p in pairs]
        for rep in self.representations():
            # a response encoder saved with prompts ("query" for contexts, "document" for replies) gets them
            ctx_in, resp_in = rep.prompted(contexts, "query"), rep.prompted(responses, "document")
            (ctx, resp), feat_s = self._features(rep, ctx_in + resp_in, ctx_in, resp_in)
            t0 = time.perf_counter()
            metrics = recall_at_k(ctx, resp, c.response.candidates)
            metrics["features_seconds"] = round(feat_s, 3)
            self._add(rep, spec, "response-selection", metrics, time.perf_counter() - t0 + feat_s)

    # ---- perplexity ------------------------------------------------------------------------
    def run_ppl(self, spec: TaskSpec) -> None:
        from convssl.evaluate.perplexity import NotCausalLM, load_causal_lm, perplexity

        c = self.config
        dialogues, rejected = load_dialogues(spec)
        if c.perplexity.max_dialogues > 0:
            dialogues = dialogues[: c.perplexity.max_dialogues]
        self.result.tasks[spec.name] = {"kind": spec.kind, "path": spec.path, "dialogues": len(dialogues),
                                        "rejected_records": rejected}
        candidates = [(p, display_name(p), "model", False) for p in c.models]
        candidates += [(p, display_name(p), "baseline", False) for p in c.baselines]
        if c.random_baseline:
            candidates += [(p, f"random-init({display_name(p)})", "random-init", True) for p in c.models]
        for path, name, kind, random_init in candidates:
            rep = Representation(name=name, kind=kind, path=str(path))
            t0 = time.perf_counter()
            try:
                model, tokenizer = load_causal_lm(path, random_init=random_init, seed=c.seed)
            except NotCausalLM as exc:
                LOG.warning("%s", exc)
                self._add(rep, spec, "perplexity", {}, time.perf_counter() - t0, note=f"skipped: {exc}")
                continue
            metrics = perplexity(model, tokenizer, dialogues, c.perplexity.max_length, c.perplexity.batch_size)
            self._add(rep, spec, "perplexity", metrics, time.perf_counter() - t0)


RUN_KEY_FILE = "evaluate-run.json"


def _finished_run(record: Path, identity: dict[str, Any]) -> dict[str, Any] | None:
    """The stored result of a finished training run with this identity, else None."""
    import json

    if not record.exists():
        return None
    try:
        stored = json.loads(record.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None
    return stored.get("result") if stored.get("identity") == json.loads(json.dumps(identity, default=str)) else None


def _record_run(record: Path, identity: dict[str, Any], result: dict[str, Any]) -> None:
    from convssl.runs import write_json_atomic

    record.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(record, {"identity": identity, "result": result})


def _data_name(path: str) -> str:
    """`banking77` for a folder, `clinc150-data_full` for a file (its folder names the set)."""
    p = Path(path)
    return p.name if p.is_dir() else f"{p.parent.name}-{p.stem}"


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def classifier_history(folder: Path) -> list[dict[str, Any]]:
    """The per-epoch history `convssl finetune` writes to training.json (empty for SetFit)."""
    import json

    path = Path(folder) / "training.json"
    if not path.exists():
        return []
    return list(json.loads(path.read_text(encoding="utf-8")).get("history") or [])


def evaluate(config: EvaluateConfig, out_dir: str | Path | None = None) -> EvaluationResult:
    """Run the evaluation and write report.json, report.md and plots to `out_dir`."""
    from convssl.evaluate.report import write_report

    out = Path(out_dir or config.out)
    runner = Runner(config, out)  # checks the config, models and tasks before anything is written
    prepare_run_dir(out, config)
    print(f"convssl evaluate: writing to {out}", flush=True)
    started = time.perf_counter()
    result = runner.run()
    write_report(result, out, seconds=time.perf_counter() - started)
    return result
