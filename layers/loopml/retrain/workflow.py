"""The retraining steps, one per Task state of ``infra/statemachine/retrain.asl.json``.

Each step takes the execution's state, does one thing, and returns its result (which the state
machine stores under the step's key). Steps are safe to retry: what they write is keyed by the
execution (``run_id``), and markers under ``retrain/<model>/<run_id>/`` let a retried step find what
its earlier attempt already did.

Lifecycle of the inference function's alias ``live`` during a run::

    before           live -> L_champion (100%)
    deploy           live -> L_champion + L_canary (canary_percent)   L_canary has MODEL_VERSION=<n>
    promote          live -> L_canary (100%)                           registry champion -> n
    rollback/cleanup live -> L_champion (100%)                          registry champion unchanged
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import ValidationError

from loopml.capture import CapturedRow
from loopml.data import read_table
from loopml.errors import ConfigurationError, InvalidInput
from loopml.inference.models import pinned_environment, served_model
from loopml.observability import logger
from loopml.promotion import Promotion
from loopml.registry import (
    HistoryAction,
    HistoryEvent,
    ModelMetadata,
    ModelRegistry,
    serialize_bundle,
    verify_and_load,
)
from loopml.retrain.adapters import Lane
from loopml.retrain.approvals import Approvals
from loopml.retrain.canary import judge
from loopml.retrain.dataset import WEIGHT, LabelPolicy, clean_columns, combine, select_feedback
from loopml.retrain.errors import ModelNotServed
from loopml.retrain.evidence import online_accuracy, with_confidences
from loopml.retrain.faults import FaultInjector
from loopml.retrain.gate import gate
from loopml.retrain.lock import RetrainLock
from loopml.retrain.models import (
    ApprovalOutcome,
    Canary,
    Challenger,
    DatasetSnapshot,
    Evaluation,
    ExecutionStatusChange,
    OnlineAccuracy,
    Outcome,
    Registered,
    RetrainState,
    RunConfig,
    StepRequest,
    TaskError,
    Verdict,
    VersionMetrics,
)
from loopml.retrain.runs import RunStore
from loopml.schema import FeatureSchema, encode_targets
from loopml.store import ObjectStore
from loopml.training import TrainingParams, metadata_for, train, validation_split

FeedbackReader = Callable[[str, datetime, datetime], Sequence[CapturedRow]]
LOCK_MARGIN = timedelta(hours=1)


def _need(value: Any, what: str) -> Any:
    if value is None:
        raise InvalidInput(f"execution state has no {what!r}: the state machine skipped a step")
    return value


class RetrainWorkflow:
    def __init__(
        self,
        store: ObjectStore,
        lanes: Callable[[str], Lane],
        approvals: Approvals,
        feedback: FeedbackReader,
        faults: FaultInjector | None = None,
        captured: FeedbackReader | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.runs = RunStore(store)
        self.registry = ModelRegistry(store, clock)
        self.lanes = lanes  # model -> its inference function (ModelNotServed for a model not declared)
        self.approvals = approvals
        self.feedback = feedback  # labelled predictions only
        self.captured = captured  # every captured prediction (the canary's confidences)
        self.lock = RetrainLock(store, clock)
        self.faults = faults
        self._clock = clock

    # --- dispatch -------------------------------------------------------------------------------
    def run_step(self, request: StepRequest) -> dict[str, Any]:
        if request.step == "start":
            run = self.start(request.state, request.execution)
            return run.model_dump(mode="json")
        try:
            state = RetrainState.model_validate(request.state)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise InvalidInput(f"step {request.step}: the execution state is malformed: {problems}") from None
        if self.faults is not None:
            self.faults.maybe_fail(request.step, state.run.model, state.run.run_id)
        steps: dict[str, Callable[[], Any]] = {
            "prepare": lambda: self.prepare(state),
            "train": lambda: self.train(state),
            "evaluate": lambda: self.evaluate(state),
            "request_approval": lambda: self.request_approval(state, request.task_token),
            "reject": lambda: self.reject(state),
            "register": lambda: self.register(state),
            "deploy": lambda: self.deploy(state),
            "check": lambda: self.check(state),
            "promote": lambda: self.promote(state),
            "rollback": lambda: self.rollback(state),
            "inconclusive": lambda: self.inconclusive(state),
            "cleanup": lambda: self.cleanup(state),
        }
        result = steps[request.step]()
        return result if isinstance(result, dict) else result.model_dump(mode="json")

    # --- helpers --------------------------------------------------------------------------------
    @staticmethod
    def _actor(run: RunConfig) -> str:
        return f"retrain:{run.run_id}"

    def _record(
        self,
        run: RunConfig,
        action: HistoryAction,
        reason: str,
        version: int | None = None,
        previous: int | None = None,
        **details: Any,
    ) -> None:
        self.registry.record(
            HistoryEvent(
                model=run.model,
                at=self._clock(),
                actor=self._actor(run),
                action=action,
                version=version,
                previous_version=previous,
                reason=reason,
                details={"run_id": run.run_id, "trigger_reason": run.reason, **details},
            )
        )

    # --- steps ----------------------------------------------------------------------------------
    def start(self, raw: Any, execution: str | None) -> RunConfig:
        """Validate the input and take the model's lock."""
        if not execution:
            raise InvalidInput("the start step needs the execution name (execution.$: $$.Execution.Name)")
        run = RunConfig.from_input(raw, execution, self._clock())
        self._require_served(run.model)  # before the lock: a run for another model touches nothing
        waiting = run.approval_timeout_seconds if run.approval else 0
        self.lock.acquire(run.model, run.run_id, timedelta(seconds=run.max_bake_seconds + waiting) + LOCK_MARGIN)
        logger.info("retraining started", extra={"model": run.model, "run_id": run.run_id, "reason": run.reason})
        return run

    def _require_served(self, model: str) -> None:
        alias = self.lanes(model).alias
        served = served_model(alias.environment())
        if served is not None and served != model:
            raise ModelNotServed(
                f"model {model!r} is not served by this deployment ({alias.function} serves {served!r}): "
                "nothing was started or changed",
                [
                    {
                        "loc": ["model"],
                        "msg": f"not served here; this deployment serves {served!r}",
                        "type": "value_error",
                    }
                ],
            )
        if not self.registry.versions(model):
            raise ModelNotServed(
                f"model {model!r} has no registered version: register and promote one first",
                [{"loc": ["model"], "msg": "no registered version", "type": "value_error"}],
            )

    def prepare(self, state: RetrainState) -> DatasetSnapshot:
        """Base data + labelled feedback, cleaned, split by time and snapshotted with their SHA-256."""
        run = state.run
        champion = self.registry.resolve(run.model, "champion")
        meta = self.registry.metadata(run.model, champion)
        base_uri = run.data_uri or meta.training_data.uri
        if run.data_uri is None:
            base = self.runs.champion_data(meta)
        else:
            data, key = self.runs.read(run.data_uri)
            base = read_table(data, key)
        schema = meta.feature_schema
        champion_data = base if run.data_uri is None else self.runs.champion_data(meta)
        golden_rows, fit_rows = self._champion_validation(champion_data, meta)
        if run.data_uri is None:  # the champion's validation rows are the golden set: never trained on
            base = {name: [values[i] for i in fit_rows] for name, values in base.items()}
        now = self._clock()
        feedback = (
            list(self.feedback(run.model, now - timedelta(days=run.feedback_days), now)) if run.feedback_days else []
        )
        n_base = len(base[schema.target]) if schema.target in base else 0
        policy = LabelPolicy(
            weights={str(k): v for k, v in run.label_weights.items()},
            per_subject=run.max_labels_per_subject,
            per_caller=run.max_labels_per_caller or max(50, n_base // 10),
        )
        selection = select_feedback(feedback, policy)
        weights = {r.prediction_id: w for r, w in zip(selection.train, selection.weights, strict=True)}
        prepared = combine(base, selection.train, schema, run.holdout_fraction, weights)
        golden = clean_columns(golden_rows + [(r.features, r.label) for r in selection.golden], schema)
        n_golden = len(golden[schema.target])
        snapshot = DatasetSnapshot(
            champion_version=champion,
            train=self.runs.snapshot(run, "train", prepared.train),
            holdout=self.runs.snapshot(run, "holdout", prepared.holdout),
            base_uri=base_uri,
            base_rows=prepared.base_rows,
            feedback_rows=prepared.feedback_rows,
            duplicates_removed=prepared.duplicates_removed,
            invalid_rows=prepared.invalid_rows,
            holdout_method=prepared.holdout_method,
            golden=self.runs.snapshot(run, "golden", golden) if n_golden else None,
            golden_rows=n_golden,
            notes=selection.notes,
        )
        logger.info("dataset prepared", extra=snapshot.model_dump(mode="json"))
        return snapshot

    @staticmethod
    def _champion_validation(
        columns: dict[str, list[Any]], meta: ModelMetadata
    ) -> tuple[list[tuple[dict[str, Any], Any]], list[int]]:
        """The champion's own validation rows (features, label) and the indices of the rows it fitted on.
        A user's estimator may have been fitted on any row of its reference data: none is a fair golden
        row, so all go to training (reviewer labels still make up its golden set)."""
        schema = meta.feature_schema
        labels = encode_targets(columns[schema.target], schema)
        if meta.params.get("model_type") == "user_estimator":
            return [], list(range(len(labels)))
        try:
            fit, valid = validation_split(labels, TrainingParams.model_validate(meta.params), schema.regression)
        except ValueError:  # a class too small to stratify: no validation rows to reuse
            return [], list(range(len(labels)))
        rows = [({n: columns[n][i] for n in schema.names}, columns[schema.target][i]) for i in valid]
        return rows, sorted(int(i) for i in fit)

    def train(self, state: RetrainState) -> Challenger:
        """The same training code as the first model, on the snapshot, staged (not yet registered)."""
        run, dataset = state.run, _need(state.dataset, "dataset")
        champion = self.registry.metadata(run.model, dataset.champion_version)
        params = TrainingParams.model_validate({**champion.params, **run.params})
        columns = self.runs.read_snapshot(dataset.train)
        weights = [float(w) for w in columns.pop(WEIGHT)] if WEIGHT in columns else None
        # A user's model is refitted as it is (its class, its hyper-parameters); a recipe is rebuilt from params.
        estimator = None
        if params.model_type == "user_estimator":
            estimator = self.registry.load_bundle(run.model, dataset.champion_version)[0]["pipeline"]
        trained = train(columns, champion.feature_schema, params, sample_weight=weights, estimator=estimator)
        meta = metadata_for(trained, run.model, dataset.train, self._actor(run), dataset.champion_version)
        compiled = trained.compiled.onnx if trained.compiled else None
        return self.runs.stage_challenger(run, serialize_bundle(trained.bundle), meta, params.model_dump(), compiled)

    def evaluate(self, state: RetrainState) -> Evaluation:
        """Challenger and champion on the same recent holdout; the gate's decision."""
        run, dataset = state.run, _need(state.dataset, "dataset")
        challenger: Challenger = _need(state.challenger, "challenger")
        new = verify_and_load(self.store.get(challenger.artifact_key), challenger.sha256, challenger.artifact_key)
        old, meta, _ = self.registry.load_bundle(run.model, dataset.champion_version)
        evaluation = gate(
            new["pipeline"],
            old["pipeline"],
            self.runs.read_snapshot(dataset.holdout),
            meta.feature_schema,
            run.primary_metric,
            run.tolerance,
            run.bias_threshold,
            run.bias_tolerance,
            golden=self.runs.read_snapshot(dataset.golden) if dataset.golden else None,
            golden_tolerance=run.golden_tolerance,
            log_loss_tolerance=run.log_loss_tolerance,
            intervals=(new.get("interval"), old.get("interval")),
        )
        logger.info("challenger evaluated", extra=evaluation.model_dump(mode="json"))
        return evaluation

    def request_approval(self, state: RetrainState, task_token: str | None) -> dict[str, Any]:
        """Park the task token until ``POST /approvals/{id}`` decides (or the task times out)."""
        run = state.run
        if not task_token:
            raise InvalidInput("request_approval needs the task token (task_token.$: $$.Task.Token)")
        evaluation = _need(state.evaluation, "evaluation")
        request = self.approvals.request(
            run.model,
            run.run_id,
            run.reason,
            task_token,
            run.approval_timeout_seconds,
            evaluation.model_dump(mode="json"),
        )
        self.runs.mark(run, "approval.json", request.approval_id.encode())
        logger.info(
            "approval requested: POST /approvals/{id} with {'decision': 'approve'|'reject', 'reason': ...}",
            extra={"model": run.model, "run_id": run.run_id, "approval_id": request.approval_id},
        )
        return {"approval_id": request.approval_id}

    def _approval_outcome(self, state: RetrainState) -> tuple[str, ApprovalOutcome | None]:
        run, error = state.run, _need(state.approval_error, "approval_error")
        raw = self.runs.marker(run, "approval.json")
        approval = raw.decode() if raw else None
        decided = self.approvals.decision(approval) if approval else None
        if decided is not None and decided.decision == "reject":
            return f"approval rejected by {decided.actor or 'unknown'}: {decided.reason or 'no reason given'}", decided
        if error.error == "States.Timeout":
            return f"no approval within {run.approval_timeout_minutes:g} minutes", None
        return f"approval failed: {error.error} {error.message}".strip(), None

    def reject(self, state: RetrainState) -> Outcome:
        """The challenger is not deployed: gated out, rejected by a human, or not approved in time."""
        run, dataset = state.run, _need(state.dataset, "dataset")
        details: dict[str, Any] = {"dataset": dataset.model_dump(mode="json")}
        if state.evaluation is not None:
            details["evaluation"] = state.evaluation.model_dump(mode="json")
        if state.approval_error is not None:
            reason, decided = self._approval_outcome(state)
            if decided is not None:
                details["approval"] = decided.model_dump(mode="json")
        else:
            evaluation: Evaluation = _need(state.evaluation, "evaluation")
            reason = "gate: " + "; ".join(evaluation.reasons)
        self._record(run, "rejected", reason, previous=dataset.champion_version, **details)
        self.lock.release(run.model, run.run_id)
        logger.info("challenger rejected", extra={"model": run.model, "reason": reason})
        return Outcome(outcome="rejected", model=run.model, champion_version=dataset.champion_version, reason=reason)

    def register(self, state: RetrainState) -> Registered:
        """The staged challenger becomes a registry version (alias ``challenger``)."""
        run = state.run
        challenger: Challenger = _need(state.challenger, "challenger")
        done = self.runs.marker(run, "registered.json")
        if done is not None:
            return Registered.model_validate_json(done)
        meta, artifact, compiled = self.runs.challenger(challenger)
        Promotion(self.registry, self.lanes(run.model).alias, self._clock).check_servable(meta)
        final = self.registry.register(meta, artifact, compiled=compiled)
        registered = Registered(version=final.version)
        self.runs.mark(run, "registered.json", registered.model_dump_json().encode())
        self.registry.set_alias(
            run.model, "challenger", final.version, self._actor(run), f"passed the gate ({run.reason})"
        )
        return registered

    def deploy(self, state: RetrainState) -> Canary:
        """Publish an inference version pinned to the challenger; route ``canary_percent`` to it."""
        run, dataset = state.run, _need(state.dataset, "dataset")
        registered: Registered = _need(state.registered, "registered")
        lane = self.lanes(run.model)
        alias = lane.alias
        done = self.runs.marker(run, "canary.json")
        if done is not None:
            canary = Canary.model_validate_json(done)
        else:
            served = served_model(alias.environment())
            if served is not None and served != run.model:
                raise ConfigurationError(f"{alias.function} serves model {served!r}, not {run.model!r}")
            primary, weights = alias.routing()
            if weights:
                raise ConfigurationError(
                    f"{alias.function}:{alias.alias} already routes {weights} to another version: "
                    "finish or roll back that rollout first"
                )
            lambda_version = alias.publish(
                pinned_environment(registered.version, run.canary_fault or ""),
                f"{run.model} v{registered.version} canary ({run.run_id})",
            )
            canary = Canary(
                model_version=registered.version,
                champion_version=dataset.champion_version,
                lambda_version=lambda_version,
                champion_lambda_version=primary,
                canary_percent=run.canary_percent,
                started_at=self._clock(),
            )
            self.runs.mark(run, "canary.json", canary.model_dump_json().encode())
        alias.route(canary.champion_lambda_version, canary.lambda_version, canary.canary_percent / 100)
        canary.alarms = lane.metrics.create_canary_alarms(
            run.model, canary.model_version, canary.lambda_version, run.canary_policy
        )
        approval = state.approval_decision.model_dump(mode="json") if state.approval_decision else None
        self._record(
            run,
            "canary_started",
            f"{canary.canary_percent:g}% of traffic for {run.bake_minutes:g} minutes",
            version=canary.model_version,
            previous=canary.champion_version,
            lambda_version=canary.lambda_version,
            champion_lambda_version=canary.champion_lambda_version,
            dataset=dataset.model_dump(mode="json"),
            evaluation=_need(state.evaluation, "evaluation").model_dump(mode="json"),
            approval=approval,
        )
        return canary

    def _online_accuracy(self, run: RunConfig, canary: Canary, now: datetime) -> OnlineAccuracy | None:
        rows = self.feedback(run.model, canary.started_at, max(now, canary.started_at + timedelta(seconds=1)))

        def pipelines() -> tuple[FeatureSchema, Any, Any, float | None]:
            schema = self.registry.metadata(run.model, canary.champion_version).feature_schema
            new, _, _ = self.registry.load_bundle(run.model, canary.model_version)
            old, _, _ = self.registry.load_bundle(run.model, canary.champion_version)
            return schema, new["pipeline"], old["pipeline"], old.get("interval", {}).get("halfwidth")

        return online_accuracy(rows, run.canary_policy.min_labels, pipelines)

    def _with_captured(
        self, run: RunConfig, canary: Canary, now: datetime, new: VersionMetrics, old: VersionMetrics
    ) -> tuple[VersionMetrics, VersionMetrics]:
        """Per-prediction confidences of both versions from the captured dataset (for their spread)."""
        if self.captured is None:
            return new, old
        rows = self.captured(run.model, canary.started_at, max(now, canary.started_at + timedelta(seconds=1)))
        return with_confidences(new, rows, canary.lambda_version), with_confidences(
            old, rows, canary.champion_lambda_version
        )

    def check(self, state: RetrainState) -> Verdict:
        """Canary vs champion over the bake window, plus the canary's alarms."""
        run, canary = state.run, _need(state.canary, "canary")
        now = self._clock()
        metrics = self.lanes(run.model).metrics
        new = metrics.summary(run.model, canary.model_version, canary.lambda_version, canary.started_at, now)
        old = metrics.summary(
            run.model, canary.champion_version, canary.champion_lambda_version, canary.started_at, now
        )
        new, old = self._with_captured(run, canary, now, new, old)
        verdict = judge(
            new,
            old,
            metrics.firing(canary.alarms),
            self._online_accuracy(run, canary, now),
            run.canary_policy,
            baked_minutes=(now - canary.started_at).total_seconds() / 60,
            max_bake_minutes=run.max_bake_seconds / 60,
        )
        logger.info("canary checked", extra=verdict.model_dump(mode="json"))
        return verdict

    def promote(self, state: RetrainState) -> Outcome:
        run, canary = state.run, _need(state.canary, "canary")
        verdict: Verdict = _need(state.verdict, "verdict")
        reason = f"canary healthy after {run.bake_minutes:g} minutes ({run.reason})"
        lane = self.lanes(run.model)
        Promotion(self.registry, lane.alias, self._clock).serve(
            run.model,
            canary.model_version,
            canary.lambda_version,
            self._actor(run),
            reason,
            run_id=run.run_id,
            trigger_reason=run.reason,
            verdict=verdict.model_dump(mode="json"),
        )
        lane.metrics.delete_alarms(canary.alarms)
        self.lock.release(run.model, run.run_id)
        return Outcome(
            outcome="promoted", model=run.model, version=canary.model_version, champion_version=canary.model_version
        )

    def rollback(self, state: RetrainState) -> Outcome:
        verdict: Verdict = _need(state.verdict, "verdict")
        return self._not_promoted(state, "rolled_back", "canary unhealthy: " + "; ".join(verdict.reasons))

    def inconclusive(self, state: RetrainState) -> Outcome:
        """Too little evidence by the end of the longest bake: the champion alone, the challenger not promoted."""
        verdict: Verdict = _need(state.verdict, "verdict")
        reason = f"canary inconclusive after {verdict.baked_minutes:g} minutes: " + "; ".join(verdict.reasons)
        return self._not_promoted(state, "inconclusive", reason)

    def _not_promoted(
        self, state: RetrainState, outcome: Literal["rolled_back", "inconclusive"], reason: str
    ) -> Outcome:
        """The champion alone behind ``live`` again, the verdict in the history, alarms and lock released."""
        run, canary = state.run, _need(state.canary, "canary")
        verdict: Verdict = _need(state.verdict, "verdict")
        self._end_own_canary(run.model, canary)
        details = {"lambda_version": canary.lambda_version, "verdict": verdict.model_dump(mode="json")}
        actions: tuple[HistoryAction, ...] = ("rolled_back", "rejected") if outcome == "rolled_back" else (outcome,)
        for action in actions:
            self._record(run, action, reason, version=canary.model_version, previous=canary.champion_version, **details)
        self.lanes(run.model).metrics.delete_alarms(canary.alarms)
        self.lock.release(run.model, run.run_id)
        return Outcome(
            outcome=outcome,
            model=run.model,
            version=canary.model_version,
            champion_version=canary.champion_version,
            reason=reason,
        )

    def cleanup_ended(self, change: ExecutionStatusChange) -> Outcome | None:
        """An execution aborted or timed out (no Catch ran): the same cleanup, from its input and markers.

        Returns None for an execution whose input is not a retraining input (nothing of ours to undo).
        """
        detail = change.detail
        try:
            run = RunConfig.from_input(json.loads(detail.input or "{}"), detail.name, self._clock())
        except (InvalidInput, ValueError):
            logger.warning("ended execution is not a retraining run", extra={"execution": detail.executionArn})
            return None
        error = TaskError.model_validate(
            {"Error": f"Execution{detail.status.title().replace('_', '')}", "Cause": f"execution {detail.name}"}
        )
        return self.cleanup(RetrainState(run=run, error=error))

    def _end_own_canary(self, model: str, canary: Canary) -> None:
        """Back to the champion only if the alias still routes to this run's canary version."""
        alias = self.lanes(model).alias
        primary, weights = alias.routing()
        if primary == canary.lambda_version or canary.lambda_version in weights:
            alias.route(canary.champion_lambda_version)
        else:
            logger.info(
                "alias live no longer routes to this run's canary; left as it is",
                extra={"primary": primary, "weights": weights, "canary": canary.lambda_version},
            )

    def cleanup(self, state: RetrainState) -> Outcome:
        """After any failure: the champion alone behind ``live``, the failure in the history, lock freed."""
        run = state.run
        error = state.error
        reason = f"{error.error}: {error.message}" if error else "failed"
        canary = state.canary
        if canary is None and (raw := self.runs.marker(run, "canary.json")) is not None:
            canary = Canary.model_validate_json(raw)
        if canary is not None:  # the marker is written before any routing: no marker, no weights of ours
            self._end_own_canary(run.model, canary)
            metrics = self.lanes(run.model).metrics
            metrics.delete_alarms(canary.alarms or metrics.alarm_names(run.model, canary.model_version))
        champion = state.dataset.champion_version if state.dataset else None
        version = state.registered.version if state.registered else None
        if self.registry.versions(run.model):  # never a history for a model the registry does not know
            self._record(run, "failed", reason, version=version, previous=champion)
        self.lock.release(run.model, run.run_id)
        logger.error("retraining failed; champion left serving", extra={"model": run.model, "reason": reason})
        return Outcome(outcome="failed", model=run.model, version=version, champion_version=champion, reason=reason)
