"""The one progress mechanism: periodic lines outside a terminal, a bar on one, warnings once."""

from __future__ import annotations

import io
import logging

from ukbmri.engine.progress import ConsoleProgress, ProgressEvent


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_log_lines_every_interval_with_counts_and_rate(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr("ukbmri.engine.progress.time.monotonic", clock)
    out = io.StringIO()
    p = ConsoleProgress("run", stream=out, live=False, interval_s=30)
    p(ProgressEvent(100, 0, 0, 0))  # the start: a line
    for done in range(1, 51):
        clock.t = done * 1.0  # one job a second
        p(ProgressEvent(100, done, done // 10, 0, "body"))
    lines = out.getvalue().splitlines()
    assert len(lines) == 2  # at 0 s and at 30 s, nothing in between
    assert lines[1].startswith("run: 30/100 jobs done (3 failed, 0 reused), 60.0 jobs/min, ETA 1:10")
    clock.t = 200.0
    p(ProgressEvent(100, 100, 10, 0, "liver"))  # the end always prints
    assert out.getvalue().splitlines()[-1].startswith("run: 100/100 jobs done (10 failed")


def test_live_bar_redraws_in_place_and_warnings_print_once_above_it():
    out = io.StringIO()
    p = ConsoleProgress("run", stream=out, live=True)
    log = logging.getLogger("ukbmri.test.progress")
    log.propagate = False
    log.addHandler(p.log_handler())
    p(ProgressEvent(4, 1, 0, 0, "body"))
    for _ in range(3):
        log.warning("duplicate station in 1000001_20201_2_0.zip")
    p(ProgressEvent(4, 2, 0, 0, "body"))
    p.close()
    text = out.getvalue()
    assert text.count("duplicate station") == 1
    assert "\r[######------------------] run: 1/4" in text and "\r[############------------] run: 2/4" in text
    assert text.endswith("\n")
