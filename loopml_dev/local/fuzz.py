"""``loopml fuzz``: schemathesis against a running local stack, every route, every check.

Cases are drawn from the API's own document (``/openapi.json``, the served model's features typed),
positive and negative, round-robin over the operations until ``requests`` have been sent. Each answer
goes through every schemathesis check; the run counts requests per status class and the failures per
check, and fails when any answer is a 5xx or violates the document.

Admin routes get the stack's admin token, as an operator's client would; the API key when one is set.
Two checks are tuned, not dropped, and the reason is printed with the results:

- ``positive_data_acceptance`` also accepts 404 and 409: a well-formed request for a prediction id or an
  approval that does not exist is answered 404 by design, and a decision already taken is 409.
- ``unsupported_method`` expects 405; API Gateway answers an undeclared method with 403 ``Missing
  Authentication Token`` (JSON), and the local stack answers as API Gateway does.
- ``POST /drift/evaluate`` may also answer 422 to schema-valid input: its window must lie between
  2000-01-01 and tomorrow and span at most 31 days, bounds that depend on the clock and on each other
  and that JSON Schema cannot state.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

SKIPPED_CHECKS = ("unsupported_method",)
ACCEPTED_STATUSES = ["2xx", "403", "404", "409"]


@dataclass
class FuzzReport:
    requests: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    by_operation: Counter[str] = field(default_factory=Counter)
    server_errors: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    examples: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.server_errors == 0 and not self.failures

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "by_status": dict(sorted(self.by_status.items())),
            "by_operation": dict(sorted(self.by_operation.items())),
            "server_errors": self.server_errors,
            "failures": dict(self.failures),
            "examples": self.examples[:20],
            "seconds": round(self.seconds, 1),
            "skipped_checks": list(SKIPPED_CHECKS),
        }


def run(api_url: str, requests: int, headers: dict[str, str], seed: int = 0) -> FuzzReport:
    """Sends ``requests`` generated requests (at least one per operation and mode) and checks every answer."""
    import hypothesis.errors
    import requests as http
    import schemathesis
    from schemathesis.generation import GenerationMode

    config = schemathesis.Config.from_dict(
        {
            "checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED_STATUSES}},
            "operations": [
                {
                    "include-path": "/drift/evaluate",
                    "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED_STATUSES, "422"]}},
                }
            ],
        }
    )
    schema = schemathesis.openapi.from_url(f"{api_url}/openapi.json", config=config)
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    strategies = [
        (op, mode, op.as_strategy(generation_mode=mode))
        for op in operations
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    ]
    from schemathesis.checks import CHECKS, load_all_checks

    load_all_checks()
    checks = CHECKS.get_by_names([name for name in CHECKS.get_all_names() if name not in SKIPPED_CHECKS])
    report = FuzzReport()
    started = time.perf_counter()
    session = http.Session()
    per_round = max(1, min(200, requests // len(strategies)))
    round_seed = seed
    exhausted: set[int] = set()  # e.g. negative cases of a route that takes no input: none exist
    while report.requests < requests:
        sent = report.requests
        for index, (op, mode, strategy) in enumerate(strategies):
            if index in exhausted or (report.requests >= requests and round_seed > seed):
                continue  # the first round reaches every operation, whatever the budget
            try:
                _fuzz_operation(report, op, mode, strategy, per_round, round_seed, api_url, session, headers, checks)
            except hypothesis.errors.Unsatisfiable:
                exhausted.add(index)
        round_seed += 1
        if report.requests == sent:  # nothing left to generate
            break
    report.seconds = time.perf_counter() - started
    return report


def _fuzz_operation(
    report: FuzzReport,
    op: Any,
    mode: Any,
    strategy: Any,
    examples: int,
    seed: int,
    api_url: str,
    session: Any,
    headers: dict[str, str],
    checks: list[Any],
) -> None:
    import hypothesis
    import requests as http
    from hypothesis import strategies as st

    label = f"{op.method.upper()} {op.path} ({mode.value})"

    @hypothesis.settings(
        max_examples=examples,
        database=None,
        derandomize=False,
        deadline=None,
        phases=[hypothesis.Phase.generate],
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.seed(seed)
    @hypothesis.given(st.data())
    def one(data: st.DataObject) -> None:
        case = data.draw(strategy)
        try:
            response = case.call(base_url=api_url, session=session, headers=headers, timeout=60)
        except http.RequestException as exc:
            report.failures["transport"] += 1
            report.examples.append({"operation": label, "check": "transport", "error": str(exc)[:300]})
            return
        report.requests += 1
        report.by_operation[label] += 1
        report.by_status[f"{response.status_code // 100}xx"] += 1
        if response.status_code >= 500:
            report.server_errors += 1
        try:
            case.validate_response(response, checks=checks, headers=headers)
        except (Exception, BaseExceptionGroup) as exc:  # schemathesis raises one failure, or a group of them
            for failure in getattr(exc, "exceptions", [exc]):
                name = type(failure).__name__
                report.failures[name] += 1
                if sum(1 for e in report.examples if e["check"] == name) < 3:
                    report.examples.append(
                        {
                            "operation": label,
                            "check": name,
                            "status": response.status_code,
                            "message": str(failure)[:600],
                            "request_body": _short(case.body),
                            "response": response.text[:300],
                        }
                    )

    one()


def _short(value: Any) -> str:
    try:
        text = json.dumps(value, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text[:300]
