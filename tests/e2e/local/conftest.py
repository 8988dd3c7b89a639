"""A local stack on free loopback ports, with fixture functions and a small test topology."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from loopml.topology import (
    BucketSpec,
    EventSource,
    FunctionSpec,
    Grant,
    QueueSpec,
    Ref,
    Route,
    Schedule,
    StateMachineSpec,
    Topology,
    bucket,
)
from loopml_dev.local import LocalStack
from tests.e2e.conftest import LogSink

FIXTURES = Path(__file__).parent / "fixtures"
API_KEY = "local-test-key"
ADMIN_TOKEN = "local-admin-token"

TEST_TOPOLOGY = Topology(
    buckets=(BucketSpec(name="results"),),
    queues=(QueueSpec(name="work", visibility_timeout_s=2, max_receive_count=2),),
    functions=(
        FunctionSpec(
            name="echo",
            description="echo",
            memory_mb=256,
            timeout_s=2,
            environment={"STATIC": "yes"},
            resources={"RESULTS_BUCKET": Ref(kind="bucket", name="results")},
            grants=(bucket("results", "write", "after/"),),  # post-invoke markers, and nothing else
            routes=(
                Route(method="GET", path="/echo/{id}", auth="none"),
                Route(method="POST", path="/echo", auth="none"),
                Route(method="GET", path="/echo/special", auth="none"),
                Route(method="GET", path="/files/{proxy+}", auth="none"),
                Route(method="GET", path="/keyed"),
                Route(method="GET", path="/admin", auth="iam"),
            ),
            schedules=(
                Schedule(name="tick", rate_minutes=60),
                Schedule(name="nightly", rate_minutes=1440, input={"job": "nightly"}, enabled=False),
            ),
        ),
        FunctionSpec(
            name="fail",
            description="fail",
            memory_mb=128,
            timeout_s=5,
            routes=(Route(method="GET", path="/fail", auth="none"),),
        ),
        FunctionSpec(name="broken", description="fails at init", memory_mb=128, timeout_s=5),
        FunctionSpec(
            name="sqs_consumer",
            description="consumer",
            memory_mb=256,
            timeout_s=2,  # within the queue's 2 s visibility (the declaration refuses longer, as Lambda does)
            resources={"RESULTS_BUCKET": Ref(kind="bucket", name="results")},
            grants=(bucket("results", "write", "processed/"), Grant(kind="queue", name="work", access="consume")),
            event_sources=(EventSource(queue="work", batch_size=10, max_batching_window_s=1),),
        ),
    ),
    state_machines=(
        StateMachineSpec(
            name="retry-catch",
            definition="retry_catch.asl.json",
            substitutions={"FailArn": Ref(kind="function", name="fail", attribute="arn")},
        ),
    ),
)


@pytest.fixture(scope="module")
def function_log() -> LogSink:
    return LogSink()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, function_log: LogSink) -> Iterator[LocalStack]:
    local = LocalStack(
        tmp_path_factory.mktemp("state"),
        stage="test",
        api_port=0,
        topology=TEST_TOPOLOGY,
        functions_root=FIXTURES / "functions",
        infra_root=FIXTURES / "infra",
        api_key=API_KEY,
        admin_token=ADMIN_TOKEN,
        snapshot_interval_s=0,
        function_log=function_log,
    )
    with local:
        yield local
    leftovers = processes_mentioning(str(local.state_dir))
    assert not leftovers, f"stop() left processes behind: {leftovers}"


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that mention ``text`` (workers carry their code folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().split(") ", 1)[1][0]
        except OSError:
            continue
        if text in command and state != "Z":
            found.append(f"{entry.name}: {command[:200]}")
    return found
