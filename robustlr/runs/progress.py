"""Progress of a grid: tqdm bars on a terminal, one line per finished trial otherwise."""

from __future__ import annotations

import sys

from tqdm import tqdm


class Progress:
    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.interactive = enabled and sys.stderr.isatty()
        self._trials = self._epochs = None
        self.total = self.done = 0

    def start(self, trials: int, epochs: int) -> None:
        self.total = trials
        if self.interactive:
            self._trials = tqdm(total=trials, desc="trials", unit="trial", position=0)
            self._epochs = tqdm(total=epochs, desc="epochs", unit="epoch", position=1, leave=False)
        elif self.enabled:
            print(f"robustlr: {trials} trials to run", file=sys.stderr, flush=True)

    def epoch(self) -> None:
        if self._epochs is not None:
            self._epochs.update()

    def trial(self, trial_id: str, status: str) -> None:
        self.done += 1
        if self._trials is not None:
            self._trials.update()
            self._trials.set_postfix_str(f"{trial_id}: {status}")
        elif self.enabled:
            print(f"robustlr: [{self.done}/{self.total}] {trial_id} {status}", file=sys.stderr,
                  flush=True)

    def close(self) -> None:
        for bar in (self._epochs, self._trials):
            if bar is not None:
                bar.close()
