"""``EdgeRuntime``: an ONNX model and its card served on CPU, logged through the SDK, hot-swappable.

Each call: validate against the card -> preprocess -> ``session.run`` -> postprocess (class
probabilities, threshold on P(positive class)) -> ``Monitor.log`` (sampling is the Monitor's
job) -> ``Prediction``. Latency percentiles over the last ``window`` calls, error and warning
counts, and the swap status are in ``telemetry()``, which is shaped to be the SDK Monitor's
``telemetry`` callable (the heartbeat's ``runtime`` object).

Hot swap: the model, its card, its version and the Monitor that logs under that version live
in one immutable-in-practice ``_Active`` object. ``swap()`` builds the new one completely
beside the old (session, card check, warm-up inference, Monitor) and then replaces a single
reference under a lock. A call reads that reference once, so it runs start to end on one
version; calls in flight finish on the old session. The old Monitor is closed (flushing what
it can) in the background once its in-flight calls are done.

Why a Monitor per version: an SDK Monitor is bound to one ``model_version`` and the records in
its spool carry no version, so a Monitor reopened on the same spool after a swap would send
the old version's unsent records as the new version's. ``EdgeRuntime`` therefore takes either
a single ``Monitor`` (fixed version: such a runtime refuses to swap) or a ``MonitorFactory``
``(model_version, telemetry) -> Monitor``, such as ``monitor.runtime.monitors.
VersionedMonitors``, which gives each version its own spool directory.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnxruntime as ort

from monitor.card import CardError, ModelCard
from monitor.runtime.preprocess import InvalidInput, Issue, Preprocessor, request_id_issue
from monitor.sdk import Monitor
from monitor.sdk.records import new_id

logger = logging.getLogger(__name__)

Telemetry = Callable[[], dict[str, Any]]


class MonitorFactory(Protocol):
    """Makes the Monitor that logs one model version (given the runtime's telemetry)."""

    def __call__(self, model_version: str, telemetry: Telemetry) -> Monitor: ...


class ModelError(Exception):
    """A model (or card) that cannot be served; ``code`` says why.

    Codes: ``invalid_model`` (onnxruntime cannot load it), ``card_mismatch`` (the card does
    not fit the graph, or names another model), ``warmup_failed`` (the first
    inference failed or gave unusable probabilities), ``monitor_failed`` (no Monitor for the
    version), ``fixed_monitor`` (a runtime with a single Monitor cannot change version), plus
    the updater's ``sha256_mismatch``, ``size_mismatch``, ``download_failed``.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class InferenceError(RuntimeError):
    """The model failed on an input that passed validation; counted as ``kind``.

    Kinds: ``inference`` (onnxruntime raised), ``non_finite_output`` (the probabilities are
    NaN or infinite although every input was within the card's ranges: the model is at fault).
    """

    def __init__(self, message: str, kind: str = "inference") -> None:
        super().__init__(message)
        self.kind = kind


def _non_finite(warnings: Sequence[Issue] | None) -> InvalidInput | InferenceError:
    """The error for NaN or infinite probabilities: the out-of-range inputs are to blame when
    there are any (the caller can fix them: InvalidInput), the model otherwise."""
    culprits = [w for w in warnings or () if w.code == "out_of_range"]
    if culprits:
        return InvalidInput(
            [
                Issue(
                    w.field,
                    "non_finite_output",
                    "the model gives NaN or infinite probabilities for this out-of-range value",
                    w.feature,
                )
                for w in culprits
            ]
        )
    return InferenceError("the model gave NaN or infinite probabilities", "non_finite_output")


@dataclass(slots=True)
class Prediction:
    """One served prediction."""

    request_id: str
    label: str | int
    probabilities: dict[str | int, float]
    model_version: str
    latency_ms: float
    warnings: tuple[Issue, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The ``POST /predict`` answer."""
        out: dict[str, Any] = {
            "request_id": self.request_id,
            "prediction": self.label,
            "probabilities": self.probabilities,
            "model_version": self.model_version,
            "latency_ms": self.latency_ms,
        }
        if self.warnings:
            out["warnings"] = [w.to_dict() for w in self.warnings]
        return out


def find_card(model_path: str | os.PathLike[str]) -> Path:
    """The card beside a model: ``<stem>.card.json`` if present, else ``card.json``."""
    path = Path(model_path)
    own = path.with_name(path.name.removesuffix(".onnx") + ".card.json")
    return own if own.exists() else path.with_name("card.json")


def session_options(threads: int) -> ort.SessionOptions:
    """CPU session options: ``threads`` intra-op threads, sequential execution, quiet logs."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only: a swap's refusal is reported, not shouted
    return options


class _Active:
    """Everything one version needs to serve; replaced as a whole by a swap."""

    __slots__ = (
        "card",
        "classes",
        "inflight",
        "input_name",
        "monitor",
        "other",
        "outputs",
        "owns_monitor",
        "positive",
        "prep",
        "session",
        "sha256",
        "threshold",
        "version",
    )

    def __init__(
        self, session: ort.InferenceSession, card: ModelCard, sha256: str, monitor: Any, owns: bool
    ) -> None:
        self.session = session
        self.card = card
        self.version = card.version
        self.sha256 = sha256
        self.monitor: Monitor | None = monitor
        self.owns_monitor = owns
        self.prep = Preprocessor(card)
        self.input_name = card.input_name
        self.outputs = [card.probabilities_output]
        self.classes = card.classes
        self.threshold = card.threshold
        self.positive: int | None = (
            None if card.positive_class is None else card.classes.index(card.positive_class)
        )
        # Binary with a positive class: the other label is fixed, no arg-max needed.
        self.other: str | int | None = None
        if self.positive is not None and len(card.classes) == 2:
            self.other = card.classes[1 - self.positive]
        self.inflight = 0

    def label(self, probs: list[float]) -> str | int:
        pos = self.positive
        if pos is not None:
            if probs[pos] >= self.threshold:
                return self.classes[pos]
            if self.other is not None:
                return self.other
            rest = [(p, i) for i, p in enumerate(probs) if i != pos]
            return self.classes[max(rest)[1]]
        return self.classes[max(range(len(probs)), key=probs.__getitem__)]


class SwapStatus:
    """What the model updater last did, for the telemetry (and so the heartbeat)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.swaps = 0
        self.failures = 0
        self.last_swap: dict[str, Any] | None = None
        self.last_error: dict[str, Any] | None = None
        self.polls = 0
        self.poll_errors = 0
        self.last_poll: dict[str, Any] | None = None

    def swapped(self, old: str, new: str) -> None:
        with self._lock:
            self.swaps += 1
            self.last_swap = {"from": old, "to": new, "at": time.time()}

    def failed(self, code: str, message: str, version: str | None) -> None:
        with self._lock:
            self.failures += 1
            self.last_error = {
                "code": code,
                "message": message,
                "version": version,
                "at": time.time(),
            }

    def polled(self, outcome: str, assigned: str | None = None, error: str | None = None) -> None:
        with self._lock:
            self.polls += 1
            if error is not None:
                self.poll_errors += 1
            self.last_poll = {
                "outcome": outcome,
                "assigned_version": assigned,
                "error": error,
                "at": time.time(),
            }

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "swaps": self.swaps,
                "failures": self.failures,
                "last_swap": self.last_swap,
                "last_error": self.last_error,
                "polls": self.polls,
                "poll_errors": self.poll_errors,
                "last_poll": self.last_poll,
            }


def _percentile(ordered: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default) on sorted data."""
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


class EdgeRuntime:
    """Serve an ONNX classifier with its card, log every call, keep telemetry; thread-safe.

    Args:
        model: path to the ``.onnx`` file, or its bytes.
        card: a ``ModelCard``, a path to the card JSON, or None to look beside a model path
            (``find_card``).
        monitor: None (no logging), one SDK ``Monitor`` (bound to the card's version; the
            caller owns and closes it; the runtime then refuses swaps), or a
            ``MonitorFactory`` (the runtime owns the Monitors it makes and closes them).
        threads: onnxruntime intra-op threads (1 suits batch-1 calls on a small CPU).
        window: how many recent calls the latency percentiles cover.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | bytes,
        card: ModelCard | str | os.PathLike[str] | None = None,
        *,
        monitor: Monitor | MonitorFactory | None = None,
        threads: int = 1,
        window: int = 1000,
    ) -> None:
        if not isinstance(threads, int) or threads < 1:
            raise ValueError("threads must be a positive int")
        if not isinstance(window, int) or window < 1:
            raise ValueError("window must be a positive int")
        if card is None and isinstance(model, bytes):
            raise ValueError("a model given as bytes needs its card")
        data = model if isinstance(model, bytes) else Path(model).read_bytes()
        if card is None:
            card = find_card(model)  # type: ignore[arg-type]
        if not isinstance(card, ModelCard):
            card = ModelCard.load(card)
        self.threads = threads
        self.model_name = card.name
        self.started_at = time.time()
        self._lock = threading.Lock()
        self._drained = threading.Condition(self._lock)
        self._swap_lock = threading.Lock()  # one swap at a time; never held by predict
        self._closed = False
        self._factory: MonitorFactory | None = None
        fixed: Monitor | None = None
        if isinstance(monitor, Monitor):
            if (monitor.model, monitor.model_version) != (card.name, card.version):
                raise ValueError(
                    f"the Monitor logs {monitor.model} {monitor.model_version}, the card is "
                    f"{card.name} {card.version}"
                )
            fixed = monitor
        elif monitor is not None:
            if not callable(monitor):
                raise ValueError("monitor must be a Monitor, a MonitorFactory or None")
            self._factory = monitor
        self.status = SwapStatus()
        # Without a Monitor, request ids come from the SDK's (time-ordered) generator; with one,
        # the Monitor's record id is the request id, so a record carries a single id.
        self._new_id: Callable[[], str] = new_id
        self._latencies: deque[float] = deque(maxlen=window)
        self._calls = 0
        self._rows = 0
        self._errors: Counter[str] = Counter()
        self._warnings: dict[str, Counter[str]] = {}
        try:
            session = self._load(data, card)
            self._warm_up(session, card)
        except ModelError as exc:
            raise ModelError(exc.code, f"{card.name} {card.version}: {exc.message}") from exc
        self._state = _Active(session, card, _sha256(data), fixed, owns=self._factory is not None)
        if self._factory is not None:
            # After _state exists: the Monitor's first heartbeat may call telemetry() at once.
            self._state.monitor = self._factory(card.version, self.telemetry)

    # -- serving -------------------------------------------------------------------------------

    @property
    def model_version(self) -> str:
        return self._state.version

    @property
    def card(self) -> ModelCard:
        return self._state.card

    @property
    def sha256(self) -> str:
        return self._state.sha256

    @property
    def monitor(self) -> Monitor | None:
        """The Monitor logging the current version (e.g. to send a heartbeat now)."""
        return self._state.monitor

    def predict(self, features: Mapping[str, Any], *, request_id: str | None = None) -> Prediction:
        """Serve one request; InvalidInput (``.issues``) for unusable features, never a crash.

        ``request_id`` (a str of 1..128 characters, no NUL, valid Unicode) identifies the
        prediction for labels; without one the runtime makes one. Probabilities are always
        finite: NaN or infinite ones raise InvalidInput (``non_finite_output`` on the
        out-of-range features that caused them) or InferenceError (the model's fault).
        """
        start = time.perf_counter()
        lock = self._lock
        with lock:
            state = self._state
            state.inflight += 1
        try:
            if request_id is not None:
                issue = request_id_issue(request_id)
                if issue is not None:
                    raise InvalidInput([issue])
            x, warnings = state.prep.row(features)
            try:
                probs = state.session.run(
                    state.outputs,
                    {state.input_name: np.array(x, dtype=np.float32).reshape(1, len(x))},
                )[0][0].tolist()
            except Exception as exc:
                raise InferenceError(f"onnxruntime failed: {exc}") from exc
            if not math.isfinite(sum(probs)):  # one test for NaN and infinity in any class
                raise _non_finite(warnings)
            label = state.label(probs)
            probabilities = dict(zip(state.classes, probs, strict=True))
            latency_ms = (time.perf_counter() - start) * 1000.0
            monitor = state.monitor
            if monitor is not None:
                request_id = (
                    monitor.log(
                        features,
                        label,
                        probabilities=probabilities,
                        request_id=request_id,
                        latency_ms=latency_ms,
                    )
                    or request_id
                )
            if request_id is None:
                request_id = self._new_id()
        except BaseException as exc:
            self._failed(state, exc)
            raise
        with lock:
            state.inflight -= 1
            self._calls += 1
            self._rows += 1
            self._latencies.append(latency_ms)
            if warnings is not None:
                self._count_warnings(warnings)
            if state.inflight == 0 and state is not self._state:
                self._drained.notify_all()
        return Prediction(
            request_id,
            label,
            probabilities,
            state.version,
            latency_ms,
            () if warnings is None else tuple(warnings),
        )

    def _failed(self, state: _Active, exc: BaseException) -> None:
        """Count a failed call by kind and release its version."""
        if isinstance(exc, InvalidInput | InferenceError):
            kind = exc.kind
        else:
            kind = "internal"
            logger.error("edge-monitor runtime: prediction failed", exc_info=exc)
        with self._lock:
            state.inflight -= 1
            self._calls += 1
            self._errors[kind] += 1
            if state.inflight == 0 and state is not self._state:
                self._drained.notify_all()

    def predict_batch(
        self, rows: Sequence[Mapping[str, Any]], *, request_ids: Sequence[str] | None = None
    ) -> list[Prediction]:
        """Serve many rows with one inference; InvalidInput names ``rows[i].<feature>``.

        All rows are validated first: one bad row (or request id, or row with NaN or infinite
        probabilities) fails the whole call. Each row is logged as its own record;
        ``latency_ms`` of each is the batch's time divided by its rows.
        """
        start = time.perf_counter()
        with self._lock:
            state = self._state
            state.inflight += 1
        warnings: list[Issue] = []
        out: list[Prediction] = []
        try:
            if request_ids is not None:
                if len(request_ids) != len(rows):
                    raise InvalidInput(
                        [Issue("request_ids", "invalid_value", "must have one id per row")]
                    )
                bad = [
                    issue
                    for i, rid in enumerate(request_ids)
                    if (issue := request_id_issue(rid, f"request_ids[{i}]")) is not None
                ]
                if bad:
                    raise InvalidInput(bad)
            matrix = np.zeros((len(rows), state.prep.width), dtype=np.float32)
            for i, features in enumerate(rows):
                x, row_warnings = state.prep.row(features, f"rows[{i}]")
                matrix[i] = x
                if row_warnings:
                    warnings += row_warnings
            if rows:
                try:
                    probs = state.session.run(state.outputs, {state.input_name: matrix})[0]
                except Exception as exc:
                    raise InferenceError(f"onnxruntime failed: {exc}") from exc
                finite = np.isfinite(probs).all(axis=1)
                if not finite.all():
                    raise _batch_non_finite(np.flatnonzero(~finite).tolist(), warnings)
                latency_ms = (time.perf_counter() - start) * 1000.0
                per_row_ms = latency_ms / len(rows)
                monitor = state.monitor
                for i, p in enumerate(probs.tolist()):
                    label = state.label(p)
                    probabilities = dict(zip(state.classes, p, strict=True))
                    rid = request_ids[i] if request_ids is not None else None
                    if monitor is not None:
                        rid = (
                            monitor.log(
                                rows[i],
                                label,
                                probabilities=probabilities,
                                request_id=rid,
                                latency_ms=per_row_ms,
                            )
                            or rid
                        )
                    if rid is None:
                        rid = self._new_id()
                    mine = tuple(w for w in warnings if w.field.startswith(f"rows[{i}]."))
                    out.append(
                        Prediction(rid, label, probabilities, state.version, per_row_ms, mine)
                    )
        except BaseException as exc:
            self._failed(state, exc)
            raise
        with self._lock:
            state.inflight -= 1
            self._calls += 1
            if rows:
                self._rows += len(rows)
                self._latencies.append(latency_ms)
            self._count_warnings(warnings)
            if state.inflight == 0 and state is not self._state:
                self._drained.notify_all()
        return out

    def log_label(self, request_id: str, label: Any) -> None:
        """Pass a ground-truth label to the current Monitor (no-op without one)."""
        monitor = self._state.monitor
        if monitor is not None:
            monitor.log_label(request_id, label)

    # -- counters ------------------------------------------------------------------------------

    def count_error(self, kind: str) -> None:
        """Count a failed request by kind (the HTTP server counts its own, e.g. bad JSON)."""
        with self._lock:
            self._errors[kind] += 1

    def _count_warnings(self, warnings: list[Issue]) -> None:
        # Called with the lock held.
        for w in warnings:
            counter = self._warnings.get(w.code)
            if counter is None:
                counter = self._warnings[w.code] = Counter()
            counter[w.feature or w.field] += 1

    def telemetry(self) -> dict[str, Any]:
        """Counters, latency percentiles (ms, last ``window`` calls) and swap status; JSON-able.

        Suitable as the SDK Monitor's ``telemetry`` callable.
        """
        with self._lock:
            state = self._state
            ordered = sorted(self._latencies)
            calls, rows = self._calls, self._rows
            errors = dict(self._errors)
            warnings = {code: dict(c) for code, c in self._warnings.items()}
        latency: dict[str, Any] = {"window": len(ordered)}
        if ordered:
            for q in (50, 95, 99):
                latency[f"p{q}"] = round(_percentile(ordered, q), 4)
            latency["max"] = round(ordered[-1], 4)
        return {
            "model": self.model_name,
            "model_version": state.version,
            "model_sha256": state.sha256,
            "threads": self.threads,
            "calls": calls,
            "rows": rows,
            "errors_total": sum(errors.values()),
            "errors": errors,
            "warnings": warnings,
            "latency_ms": latency,
            "swap": self.status.snapshot(),
            "uptime_s": round(time.time() - self.started_at, 3),
        }

    # -- loading and swapping ------------------------------------------------------------------

    def _load(self, data: bytes, card: ModelCard) -> ort.InferenceSession:
        try:
            session = ort.InferenceSession(
                data, sess_options=session_options(self.threads), providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise ModelError("invalid_model", f"onnxruntime cannot load the model: {exc}") from exc
        inputs = {i.name: i for i in session.get_inputs()}
        outputs = {o.name: o for o in session.get_outputs()}
        problems = []
        if set(inputs) != {card.input_name}:
            problems.append(f"graph inputs {sorted(inputs)} != card input {card.input_name!r}")
        else:
            spec = inputs[card.input_name]
            shape = spec.shape
            if spec.type != "tensor(float)":
                problems.append(f"input {card.input_name!r} is {spec.type}, not tensor(float)")
            if len(shape) != 2:
                problems.append(f"input {card.input_name!r} has rank {len(shape)}, not 2")
            elif isinstance(shape[1], int) and shape[1] != len(card.columns):
                problems.append(
                    f"input {card.input_name!r} has {shape[1]} columns, the card "
                    f"{len(card.columns)}"
                )
        out = outputs.get(card.probabilities_output)
        if out is None:
            problems.append(f"no output {card.probabilities_output!r} (has {sorted(outputs)})")
        elif out.type != "tensor(float)":
            problems.append(f"output {card.probabilities_output!r} is {out.type}")
        if card.label_output is not None and card.label_output not in outputs:
            problems.append(f"no output {card.label_output!r}")
        if problems:
            raise ModelError("card_mismatch", "; ".join(problems))
        return session

    def _warm_up(self, session: ort.InferenceSession, card: ModelCard) -> None:
        # One real inference before serving: allocations happen here and a model that loads
        # but cannot run (or answers nonsense) is refused before it replaces a working one.
        prep = Preprocessor(card)
        x, _ = prep.row(prep.typical_row(card))
        try:
            (probs,) = session.run(
                [card.probabilities_output], {card.input_name: np.array([x], dtype=np.float32)}
            )
        except Exception as exc:
            raise ModelError("warmup_failed", f"the first inference failed: {exc}") from exc
        probs = np.asarray(probs)
        if probs.shape != (1, len(card.classes)):
            raise ModelError(
                "card_mismatch",
                f"probabilities have shape {probs.shape}, expected (1, {len(card.classes)}) "
                "for the card's classes",
            )
        if not np.all(np.isfinite(probs)) or abs(float(probs.sum()) - 1.0) > 1e-3:
            raise ModelError("warmup_failed", f"probabilities are not a distribution: {probs}")

    def swap(self, model: bytes, card: ModelCard | Mapping[str, Any]) -> None:
        """Serve ``model`` (ONNX bytes) with ``card`` from now on; ModelError if unusable.

        The old model keeps serving until the new one is loaded, checked against its card and
        warmed up; the error is also recorded in ``telemetry()["swap"]["last_error"]``. The
        card must name this runtime's model; its version becomes the served version.
        """
        version = card.get("version") if isinstance(card, Mapping) else card.version
        try:
            with self._swap_lock:
                self._swap(model, card)
        except ModelError as exc:
            self.status.failed(exc.code, exc.message, version if isinstance(version, str) else None)
            logger.error("edge-monitor runtime: model swap refused (%s): %s", exc.code, exc.message)
            raise

    def _swap(self, model: bytes, card: ModelCard | Mapping[str, Any]) -> None:
        if self._closed:
            raise ModelError("closed", "the runtime is closed")
        if not isinstance(card, ModelCard):
            try:
                card = ModelCard.from_dict(card)
            except CardError as exc:
                raise ModelError("card_mismatch", f"invalid card: {exc}") from exc
        if card.name != self.model_name:
            raise ModelError(
                "card_mismatch",
                f"the card is for {card.name!r}, this runtime serves {self.model_name!r}",
            )
        old = self._state
        same_version = card.version == old.version
        if self._factory is None and old.monitor is not None and not same_version:
            raise ModelError(
                "fixed_monitor",
                "this runtime logs through one Monitor bound to version "
                f"{old.version}; give it a MonitorFactory to change versions",
            )
        session = self._load(model, card)
        self._warm_up(session, card)
        if same_version:
            # New bytes under the same version: keep its Monitor (a second one on the same
            # spool directory would find it locked and run memory-only).
            monitor, owns = old.monitor, old.owns_monitor
        elif self._factory is not None:
            try:
                monitor, owns = self._factory(card.version, self.telemetry), True
            except Exception as exc:
                raise ModelError("monitor_failed", f"no Monitor for the version: {exc}") from exc
        else:
            monitor, owns = None, False
        new = _Active(session, card, _sha256(model), monitor, owns)
        with self._lock:
            self._state = new  # the swap: every later call sees the new version
            if same_version:
                old.owns_monitor = False
        self.status.swapped(old.version, new.version)
        logger.info(
            "edge-monitor runtime: now serving %s %s (was %s)",
            self.model_name,
            new.version,
            old.version,
        )
        threading.Thread(
            target=self._retire, args=(old,), name="edge-runtime-retire", daemon=True
        ).start()

    def _retire(self, old: _Active, timeout: float = 30.0) -> None:
        # The old Monitor may still get log() calls from calls in flight: close it after them.
        with self._lock:
            self._drained.wait_for(lambda: old.inflight == 0, timeout)
        if old.owns_monitor and old.monitor is not None:
            old.monitor.close(timeout=10.0)

    def close(self, timeout: float = 10.0) -> None:
        """Close the Monitor the runtime made (flushing within ``timeout``); idempotent.

        Later calls are still served, but no longer logged (the closed Monitor counts them as
        dropped), and swaps are refused.
        """
        with self._swap_lock:
            self._closed = True
            state = self._state
        if state.owns_monitor and state.monitor is not None:
            state.monitor.close(timeout=timeout)

    def __enter__(self) -> EdgeRuntime:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _batch_non_finite(bad_rows: list[int], warnings: list[Issue]) -> InvalidInput | InferenceError:
    """``_non_finite`` for a batch: InvalidInput only if every bad row has an out-of-range value."""
    prefixes = [f"rows[{i}]." for i in bad_rows]
    culprits = [[w for w in warnings if w.field.startswith(p)] for p in prefixes]
    if all(any(w.code == "out_of_range" for w in row) for row in culprits):
        return _non_finite([w for row in culprits for w in row])
    return InferenceError(
        f"the model gave NaN or infinite probabilities for rows {bad_rows}", "non_finite_output"
    )


__all__ = [
    "EdgeRuntime",
    "InferenceError",
    "ModelError",
    "MonitorFactory",
    "Prediction",
    "SwapStatus",
    "find_card",
]
