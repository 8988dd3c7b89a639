"""``make demo``: the whole lifecycle on the local stack, in three rounds, with a summary and an HTML report.

Round 1: v1 serves normal traffic with feedback; the traffic drifts (covariate and concept shift); the
drift function detects it and starts the retraining workflow; the challenger is trained on the
labelled feedback, gated, rolled out as a canary through alias weights and promoted once the canary
has shown, on enough predictions, that it is no worse.
Round 2: a deliberately worse challenger (near-constant: its ranking survives, its probabilities
collapse) is stopped at the gate by log loss on the golden set, even with the primary metric's
tolerance opened wide; it never serves traffic.
Round 3: a healthy challenger whose canary Lambda version fails every request (a drill fault) is
caught by the canary check and rolled back; the champion keeps serving 100%.

Everything goes through the same HTTP API, queues and state machine a user would touch.
"""

from __future__ import annotations

import html
import json
import random
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from loopml.errors import LoopmlError
from loopml_dev import datasets
from loopml_dev.local.stack import LocalStack, free_port, reset
from loopml_dev.local.up import MODEL, Progress, ensure_first_model, http_json, registry_for

STAGE = "local"
BAKE_MINUTES = 0.25
MAX_BAKE_MINUTES = 2.0
CANARY_PERCENT = 30
# The demo's traffic is one client at a few requests a second: margins sized for that volume (the
# defaults are for production traffic), and its labels stand for many users, so they are not capped.
DEMO_POLICY = {"max_error_rate_increase": 0.08, "min_predictions": 50}
DEMO_LABELS_PER_CALLER = 100_000
BATCH = 50


@dataclass
class Timeline:
    """Alias weights sampled while the demo runs: the traffic split over time."""

    started: float = field(default_factory=time.perf_counter)
    points: list[tuple[float, dict[str, float]]] = field(default_factory=list)

    def sample(self, split: dict[str, float]) -> None:
        if not self.points or self.points[-1][1] != split:
            self.points.append((time.perf_counter() - self.started, split))


class Traffic:
    """Sends labelled traffic in the background: predictions, then the true label as user feedback."""

    def __init__(self, api: str) -> None:
        self.api = api
        self.shift = (0.0, 0.0)
        self.sent = 0
        self.labelled = 0
        self.errors = 0
        self._seed = 100
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def burst(self, rows: int, covariate: float, concept: float) -> None:
        for _ in range(max(1, rows // BATCH)):
            self._one_batch(covariate, concept)

    def _one_batch(self, covariate: float, concept: float) -> None:
        self._seed += 1
        columns = datasets.loan_default(BATCH, seed=self._seed, covariate_shift=covariate, concept_shift=concept)
        labels = columns[datasets.TARGET]
        status, answer = http_json("POST", f"{self.api}/predict", {"instances": datasets.rows(columns)})
        if status != 200:
            self.errors += 1
            return
        self.sent += len(answer["predictions"])
        items = [
            {"prediction_id": p["prediction_id"], "label": label, "source": "user"}
            for p, label in zip(answer["predictions"], labels, strict=True)
        ]
        status, _ = http_json("POST", f"{self.api}/feedback", {"items": items})
        if status == 202:
            self.labelled += len(items)
        else:
            self.errors += 1

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.is_set():
                self._one_batch(*self.shift)
                self._stop.wait(0.05)

        self._thread = threading.Thread(target=loop, name="demo-traffic", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)


def alias_split(stack: LocalStack) -> dict[str, float]:
    alias = stack.client("lambda").get_alias(FunctionName=stack.function_name("inference"), Name="live")
    weights = alias.get("RoutingConfig", {}).get("AdditionalVersionWeights", {})
    split = {f"lambda v{alias['FunctionVersion']}": round(1 - sum(weights.values()), 3)}
    split.update({f"lambda v{v}": round(w, 3) for v, w in weights.items()})
    return split


def wait_for_dataset(stack: LocalStack, labelled: int, timeout_s: float = 60) -> None:
    """Wait until every label sent is joined to its prediction in the dataset: capture and feedback go
    through SQS, so drift evaluation and training would otherwise see however much had landed."""
    from loopml.feedback.reader import read_captured

    _, store = registry_for(stack)
    since = datetime.now(UTC) - timedelta(hours=1)
    deadline = time.monotonic() + timeout_s
    while True:
        found = len(read_captured(store, MODEL, since, datetime.now(UTC) + timedelta(minutes=1), labelled_only=True))
        if found >= labelled:
            return
        if time.monotonic() > deadline:
            raise LoopmlError(
                f"only {found} of {labelled} labelled predictions reached the dataset in {timeout_s:.0f}s"
            )
        time.sleep(0.5)


def wait_for_execution(
    stack: LocalStack,
    arn: str,
    progress: Progress,
    timeline: Timeline,
    timeout_s: float,
    on_state: dict[str, Callable[[], None]],
) -> dict[str, Any]:
    """Follow the execution state by state, sampling the traffic split, until it ends; ``on_state`` runs
    an action when the execution enters the state it names.

    The returned description gains ``last_state``: ``Promoted``, ``RolledBack``, ``Rejected``... say more
    than the execution status (a rollback ends the execution as failed, on purpose).
    """
    sfn = stack.client("stepfunctions")
    seen: set[str] = set()
    last_state = ""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        timeline.sample(alias_split(stack))
        described = sfn.describe_execution(executionArn=arn)  # first: the history read after it is complete
        history = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
        for event in history:
            name = event.get("stateEnteredEventDetails", {}).get("name")
            if name and name not in seen:
                seen.add(name)
                last_state = name
                progress.step(f"  workflow: {name}")
                if name in on_state:
                    on_state[name]()
        if described["status"] != "RUNNING":
            timeline.sample(alias_split(stack))
            return {**described, "last_state": last_state}
        time.sleep(0.5)
    raise LoopmlError(f"execution {arn} did not finish within {timeout_s:.0f}s")


def run_round(
    stack: LocalStack, title: str, tag: str, given: dict[str, Any], progress: Progress, timeline: Timeline
) -> dict[str, Any]:
    """Start one retraining with ``given`` as its input, follow it, say how it ended and why."""
    machine = stack.deployment.state_machines["retrain"]
    name = f"{MODEL}-demo-{tag}-{random.randrange(1 << 30):08x}"
    arn = stack.client("stepfunctions").start_execution(stateMachineArn=machine, name=name, input=json.dumps(given))[
        "executionArn"
    ]
    return follow_round(stack, title, arn, progress, timeline)


def follow_round(
    stack: LocalStack,
    title: str,
    arn: str,
    progress: Progress,
    timeline: Timeline,
    on_state: dict[str, Callable[[], None]] | None = None,
) -> dict[str, Any]:
    """Follow one retraining to its end; how it ended and why (the history's last word on the run)."""
    t0 = time.perf_counter()
    done = wait_for_execution(stack, arn, progress, timeline, 240, on_state or {})
    registry, _ = registry_for(stack)
    champion = registry.resolve(MODEL, "champion")
    ending = [e for e in registry.history(MODEL) if e.details.get("run_id") == done["name"]]
    evaluations = [e.details["evaluation"] for e in ending if e.details.get("evaluation")]
    return {
        "name": title,
        "outcome": f"{done['last_state']}; champion v{champion}; live {alias_split(stack)}",
        "why": ending[-1].reason if ending else "",
        "gate": gate_summary(evaluations[0]) if evaluations else "",
        "seconds": time.perf_counter() - t0,
        "execution": done["name"],
    }


def gate_summary(evaluation: dict[str, Any]) -> str:
    """The gate's figures in one line: how far the challenger was from the champion, where."""
    metric = evaluation["primary_metric"]
    parts = [
        f"{metric} {evaluation['challenger'][metric]:.3f} vs champion {evaluation['champion'][metric]:.3f} "
        f"on {evaluation['holdout_rows']} recent rows"
    ]
    if evaluation.get("golden_rows"):
        new, old = evaluation["golden_challenger"], evaluation["golden_champion"]
        parts.append(f"{new[metric]:.3f} vs {old[metric]:.3f} on {evaluation['golden_rows']} golden rows")
        if "log_loss" in new:
            parts.append(f"golden log_loss {new['log_loss']:.3f} vs {old['log_loss']:.3f}")
    return "; ".join(parts)


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def versions_table(stack: LocalStack) -> list[list[str]]:
    registry, _ = registry_for(stack)
    champion = registry.resolve(MODEL, "champion")
    events = registry.history(MODEL)
    rows = [["version", "status", "accuracy", "roc_auc", "trained on", "parent", "why"]]
    for version in registry.versions(MODEL):
        meta = registry.metadata(MODEL, version)
        fate = [e for e in events if e.version == version and e.action in ("promoted", "rolled_back", "rejected")]
        superseded = any(e.action == "alias_moved" and e.previous_version == version for e in events)
        status: str = "champion" if version == champion else (fate[-1].action if fate else "")
        status = status or ("previous champion" if superseded else "registered")
        reason = fate[-1].reason if fate else ""
        rows.append(
            [
                f"v{version}",
                status,
                f"{meta.metrics.get('accuracy') or 0:.3f}",
                f"{meta.metrics.get('roc_auc') or 0:.3f}",
                f"{meta.training_data.rows} rows",
                f"v{meta.parent_version}" if meta.parent_version else "-",
                reason[:70],
            ]
        )
    return rows


def _svg_timeline(timeline: Timeline, total: float) -> str:
    width, height = 760, 60
    parts = []
    palette = ["#4c78a8", "#f58518", "#54a24b", "#e45756"]
    colors: dict[str, str] = {}
    for i, (at, split) in enumerate(timeline.points):
        end = timeline.points[i + 1][0] if i + 1 < len(timeline.points) else total
        x0, x1 = at / total * width, end / total * width
        y = 0.0
        for version, share in sorted(split.items()):
            color = colors.setdefault(version, palette[len(colors) % len(palette)])
            h = share * height
            parts.append(
                f'<rect x="{x0:.1f}" y="{y:.1f}" width="{max(x1 - x0, 0.5):.1f}" height="{h:.1f}" fill="{color}">'
                f"<title>{html.escape(version)} {share:.0%} from {at:.0f}s</title></rect>"
            )
            y += h
    legend = " ".join(f'<span style="color:{c}">&#9632; {html.escape(v)}</span>' for v, c in colors.items())
    return f'<svg width="{width}" height="{height}" role="img">{"".join(parts)}</svg><p>{legend}</p>'


def write_report(path: Path, rounds: list[dict[str, Any]], versions: list[list[str]], timeline: Timeline) -> None:
    total = max(time.perf_counter() - timeline.started, 1.0)
    header, *body = versions
    table = "<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"
    table += "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in body)
    table += "</table>"
    round_items = "".join(
        f"<li><b>{html.escape(r['name'])}</b>: {html.escape(r['outcome'])} "
        f"({r['seconds']:.0f}s; execution {html.escape(r['execution'])})</li>"
        for r in rounds
    )
    path.write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>loopml demo</title><style>"
        "body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px}</style></head><body>"
        f"<h1>loopml demo run, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC</h1>"
        f"<h2>Rounds</h2><ul>{round_items}</ul><h2>Model versions</h2>{table}"
        f"<h2>Traffic split of alias <code>live</code> over {total:.0f}s</h2>{_svg_timeline(timeline, total)}"
        "</body></html>"
    )


def run(state_dir: Path | None = None) -> int:
    progress = Progress()
    state = Path(state_dir or tempfile.mkdtemp(prefix="loopml-demo-"))
    reset(state)
    print(f"loopml demo: the whole lifecycle on the local stack (state in {state})", flush=True)
    logs: list[str] = []
    stack = LocalStack(state, stage=STAGE, api_port=free_port(), on_progress=progress.step, function_log=logs.append)
    stack.start()
    timeline = Timeline()
    traffic = Traffic(stack.api_url)
    rounds: list[dict[str, Any]] = []
    try:
        ensure_first_model(stack, progress)
        progress.step("serving normal traffic with feedback (v1)")
        traffic.burst(400, 0.0, 0.0)
        progress.step("the world changes: drifted traffic (covariate 1.0, concept 0.6) with feedback")
        traffic.burst(1200, 1.0, 0.6)
        wait_for_dataset(stack, traffic.labelled)
        traffic.shift = (1.0, 0.6)
        progress.step(f"{traffic.sent} predictions served, {traffic.labelled} labelled; evaluating drift")
        options = {
            "retrain": {
                "bake_minutes": BAKE_MINUTES,
                "max_bake_minutes": MAX_BAKE_MINUTES,
                "canary_percent": CANARY_PERCENT,
                "canary_policy": DEMO_POLICY,
                "max_labels_per_caller": DEMO_LABELS_PER_CALLER,
            }
        }
        status, summary = http_json(
            "POST", f"{stack.api_url}/drift/evaluate", {"model": MODEL, "config": {"trigger": options}}
        )
        if status != 200:
            raise LoopmlError(f"drift evaluation failed: HTTP {status} {summary}")
        progress.step(
            f"drift verdict: {summary.get('data_drift')}; performance: {summary.get('performance')}; "
            f"alerts: {'; '.join(summary.get('alerts', [])[:3])}"
        )
        decision = summary["trigger"]
        progress.step(f"trigger: {decision['action']} ({decision['message']})")
        if not decision.get("execution_arn"):
            raise LoopmlError("the drift function did not start a retraining")
        # Traffic resumes when the canary is out: the challenger is trained and gated on exactly the feedback
        # above, whatever the machine's speed (background traffic during Prepare made the data a race).
        title = "round 1: drift detected, retrain, canary, promote"
        rounds.append(
            follow_round(stack, title, decision["execution_arn"], progress, timeline, {"DeployCanary": traffic.start})
        )
        progress.step(f"round 1 ended in {rounds[-1]['outcome']}")

        progress.step("round 2: a deliberately worse challenger (near-constant), primary-metric tolerance wide open")
        common = {
            "model": MODEL,
            "bake_minutes": BAKE_MINUTES,
            "max_bake_minutes": MAX_BAKE_MINUTES,
            "canary_percent": CANARY_PERCENT,
            "canary_policy": DEMO_POLICY,
            "max_labels_per_caller": DEMO_LABELS_PER_CALLER,
        }
        worse = {
            **common,
            "reason": "demo: deliberately worse challenger (near-constant model)",
            "params": {"regularization_c": 0.00001},
            "tolerance": 1.0,
            "bias_tolerance": 1.0,
        }
        rounds.append(run_round(stack, "round 2: worse challenger", "worse", worse, progress, timeline))
        progress.step(f"round 2 ended in {rounds[-1]['outcome']}")

        progress.step("round 3: a healthy challenger whose canary fails every request (drill: canary_fault)")
        faulty = {**common, "reason": "demo: canary drill, the new version's Lambda fails", "canary_fault": "errors"}
        rounds.append(run_round(stack, "round 3: failing canary", "fault", faulty, progress, timeline))
        progress.step(f"round 3 ended in {rounds[-1]['outcome']}")
    finally:
        traffic.stop()
        versions = versions_table(stack) if stack.started else []
        stack.stop()
    report = state / "demo-report.html"
    write_report(report, rounds, versions, timeline)
    print("\n" + _table(versions))
    print()
    for outcome in rounds:
        print(f"{outcome['name']}: {outcome['outcome']} in {outcome['seconds']:.0f}s")
        if outcome.get("gate"):
            print(f"  gate: {outcome['gate']}")
        if outcome.get("why"):
            print(f"  why: {outcome['why'][:300]}")
    print("\ntraffic split of alias live over time:")
    for at, split in timeline.points:
        print(f"  {at:6.1f}s  " + ", ".join(f"{v} {s:.0%}" for v, s in sorted(split.items())))
    print(f"\n{traffic.sent} predictions, {traffic.labelled} labels, {traffic.errors} failed requests")
    print(f"report: {report}\ndemo finished in {progress.elapsed:.0f}s")
    return 0
