"""Progress of a grid: tqdm bars on a terminal, status lines otherwise; both with the elapsed
time and an ETA, and both kept alive while trials are silent.

A trial reports only its epochs and its end, so a long final evaluation (a PGD or AutoAttack
cascade) or a slow first epoch used to print nothing for minutes. A ticker thread refreshes
the bars every second and, off a terminal, prints a status line every ``every`` seconds
naming the trials that have trained all their epochs and are being evaluated.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from collections.abc import Callable

from tqdm import tqdm

STATUS_EVERY = 60.0
"""Seconds between status lines off a terminal while nothing else is printed."""


def clock(seconds: float) -> str:
    """``1h02m03s`` / ``2m03s`` / ``3s``."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class Progress:
    def __init__(self, enabled: bool = True, *, every: float = STATUS_EVERY,
                 now: Callable[[], float] = time.monotonic):
        self.enabled = enabled
        self.interactive = enabled and sys.stderr.isatty()
        self._trials = self._epochs = None
        self.total = self.done = 0
        self.total_epochs = self.epochs_done = 0
        self.epochs_per_trial = 0
        self._seen: Counter[str] = Counter()  # epochs reported per running trial
        self._every, self._now = every, now
        self._started = self._last_line = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def start(self, trials: int, epochs: int) -> None:
        self.total, self.total_epochs = trials, epochs
        self.epochs_per_trial = epochs // trials if trials else 0
        self._started = self._last_line = self._now()
        if self.interactive:
            self._trials = tqdm(total=trials, desc="trials", unit="trial", position=0)
            self._epochs = tqdm(total=epochs, desc="epochs", unit="epoch", position=1, leave=False)
        elif self.enabled:
            self._print(f"{trials} trials to run")
        if self.enabled and trials:
            self._ticker = threading.Thread(target=self._tick, name="robustlr-progress",
                                            daemon=True)
            self._ticker.start()

    def epoch(self, trial_id: str | None = None) -> None:
        with self._lock:
            self.epochs_done += 1
            if trial_id is not None:
                self._seen[trial_id] += 1
            if self._epochs is not None:
                self._epochs.update()

    def trial(self, trial_id: str, status: str) -> None:
        with self._lock:
            self.done += 1
            self._seen.pop(trial_id, None)
            if self._trials is not None:
                self._trials.update()
                self._trials.set_postfix_str(f"{trial_id}: {status}")
            elif self.enabled:
                self._print(f"[{self.done}/{self.total}] {trial_id} {status}; {self._timing()}")

    def evaluating(self) -> list[str]:
        """Trials that reported every planned epoch and have not ended: in their final
        evaluation (or stopped early by their budget and finishing)."""
        return sorted(t for t, n in self._seen.items() if n >= self.epochs_per_trial > 0)

    def eta(self) -> float | None:
        """Seconds left, from the finished trials' pace once there is one (it includes their
        final evaluations), else from the epochs' pace; None before either has moved."""
        elapsed = self._now() - self._started
        if self.done:
            return elapsed / self.done * (self.total - self.done)
        if self.epochs_done:
            return elapsed / self.epochs_done * (self.total_epochs - self.epochs_done)
        return None

    def status(self) -> str:
        running = len(self._seen)
        evaluating = self.evaluating()
        parts = [f"{self.done}/{self.total} trials done", f"{running} running"]
        if evaluating:
            parts.append(f"in final evaluation: {', '.join(evaluating[:3])}"
                         + (f" and {len(evaluating) - 3} more" if len(evaluating) > 3 else ""))
        parts.append(f"epochs {self.epochs_done}/{self.total_epochs}")
        return "; ".join(parts) + f"; {self._timing()}"

    def _timing(self) -> str:
        eta = self.eta()
        elapsed = clock(self._now() - self._started)
        return f"elapsed {elapsed}, ETA {clock(eta) if eta is not None else 'unknown'}"

    def _print(self, message: str) -> None:
        self._last_line = self._now()
        print(f"robustlr: {message}", file=sys.stderr, flush=True)

    def tick(self) -> None:
        """One beat of the ticker: refresh the bars, or print a status line when the last
        line is ``every`` seconds old."""
        with self._lock:
            if self._trials is not None:
                evaluating = self.evaluating()
                if evaluating:
                    self._trials.set_postfix_str(f"evaluating {evaluating[0]}")
                self._trials.refresh()
                if self._epochs is not None:
                    self._epochs.refresh()
            elif self.enabled and self._now() - self._last_line >= self._every:
                self._print(self.status())

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            self.tick()

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=5)
        for bar in (self._epochs, self._trials):
            if bar is not None:
                bar.close()
