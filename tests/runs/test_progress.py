"""Progress off a terminal: every line says the elapsed time and an ETA, a silent stretch
(a trial's final evaluation) still prints a status line that names the trial, and the ticker
thread stops with the run."""

from __future__ import annotations

import threading

import pytest

from robustlr.runs.progress import Progress, clock


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setattr("sys.stderr.isatty", lambda: False, raising=False)
    now = FakeClock()
    progress = Progress(enabled=True, every=30.0, now=now)
    yield progress, now
    progress.close()


def test_clock_reads_hours_minutes_and_seconds():
    assert (clock(3), clock(123), clock(3723), clock(-1)) == ("3s", "2m03s", "1h02m03s", "0s")


def test_eta_follows_epochs_then_finished_trials(offline):
    progress, now = offline
    progress.start(trials=4, epochs=4 * 5)
    assert progress.eta() is None
    now.t += 10
    progress.epoch("a")  # 1 of 20 epochs in 10 s: 190 s left at that pace
    assert progress.eta() == pytest.approx(190.0)
    now.t += 90
    for _ in range(4):
        progress.epoch("a")
    progress.trial("a", "ok")  # 1 of 4 trials in 100 s (its evaluation included): 300 s left
    assert progress.eta() == pytest.approx(300.0)


def test_a_silent_final_evaluation_prints_a_status_line_naming_the_trial(offline, capsys):
    progress, now = offline
    progress.start(trials=2, epochs=2 * 3)
    for _ in range(3):
        progress.epoch("pgd-trial")
    progress.epoch("other")
    capsys.readouterr()
    now.t += 29
    progress.tick()
    assert capsys.readouterr().err == ""  # the last line is not 30 s old yet
    now.t += 1
    progress.tick()
    line = capsys.readouterr().err.strip()
    assert line.startswith("robustlr: 0/2 trials done; 2 running; in final evaluation: pgd-trial")
    assert "epochs 4/6" in line and "elapsed 30s" in line and "ETA 15s" in line


def test_each_finished_trial_line_has_elapsed_and_eta(offline, capsys):
    progress, now = offline
    progress.start(trials=2, epochs=2)
    now.t += 65
    progress.epoch("a")
    progress.trial("a", "ok")
    assert capsys.readouterr().err.splitlines()[-1] == (
        "robustlr: [1/2] a ok; elapsed 1m05s, ETA 1m05s")


def test_the_ticker_thread_stops_when_the_progress_closes(offline):
    progress, _ = offline
    progress.start(trials=1, epochs=1)
    assert any(t.name == "robustlr-progress" for t in threading.enumerate())
    progress.close()
    assert not any(t.name == "robustlr-progress" for t in threading.enumerate())


def test_disabled_progress_prints_nothing_and_starts_no_thread(capsys):
    progress = Progress(enabled=False)
    progress.start(trials=3, epochs=3)
    progress.epoch("a")
    progress.trial("a", "ok")
    progress.tick()
    progress.close()
    assert capsys.readouterr().err == ""
    assert not any(t.name == "robustlr-progress" for t in threading.enumerate())
