"""`make demo` end to end: drift detected and a challenger promoted on evidence; a collapsed one stopped at
the gate by the metric that caught it; a failing canary rolled back; a report written."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest

from loopml_dev.demo import run

pytestmark = pytest.mark.e2e


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.append(tag)


def test_the_demo_runs_all_three_rounds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path / "demo") == 0
    out = capsys.readouterr().out
    assert "round 1: drift detected, retrain, canary, promote: Promoted" in out
    assert "round 2: worse challenger: Rejected; champion v2" in out
    assert "log_loss on the golden set rose by" in out  # the metric that caught it, named
    assert "round 3: failing canary: RolledBack; champion v2" in out
    assert "error_rate: canary worse by" in out
    assert "lambda v1 70%, lambda v2 30%" in out  # the canary split was seen
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("v") and line[1:2].isdigit()}
    assert "champion" in rows["v2"] and "rejected" in rows["v3"] and "v4" not in rows
    report = (tmp_path / "demo" / "demo-report.html").read_text()
    tags = Tags()
    tags.feed(report)
    assert tags.seen.count("svg") == 1 and "table" in tags.seen
    assert "canary unhealthy" in report
