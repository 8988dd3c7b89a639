"""`make bench` reads handlers and sample events from the repository: the paths it derives must exist."""

from __future__ import annotations

from loopml_dev.bench import feedback, inference


def test_benchmarks_find_the_handlers_and_events_they_time() -> None:
    assert (inference.REPO / "functions" / "inference" / "app.py").is_file()
    assert inference.EVENT.is_file()
    assert (feedback.REPO / "functions" / "feedback" / "app.py").is_file()
