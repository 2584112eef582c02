"""A run folder's record of the config it was started with, so that ``--resume`` never mixes
configurations: editing ``config.yaml`` inside a folder (another LR, one more schedule) and
resuming would train the new trials one way beside old ones trained another, and the report
would present them as one grid.

The database holds the resolved config (canonical JSON, without ``report``, which only decides
how the results are presented) and its SHA-1; a resume whose config differs is refused with
the changed keys named.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from robustlr.config import ExperimentConfig
from robustlr.errors import InputError
from robustlr.results.store import Store

CONFIG_KEY, DIGEST_KEY = "config", "config_sha1"
PRESENTATION = ("report",)


class ConfigChanged(InputError):
    """A resumed folder whose config no longer matches the one it was started with (exit 2)."""


def _resolved(config: ExperimentConfig) -> dict[str, Any]:
    return config.model_dump(mode="json", exclude=set(PRESENTATION))


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def record(store: Store, config: ExperimentConfig) -> None:
    text = json.dumps(_resolved(config), sort_keys=True)
    store.set_meta(CONFIG_KEY, text)
    store.set_meta(DIGEST_KEY, _digest(text))


def check(store: Store, config: ExperimentConfig, where: str) -> None:
    """Refuse ``config`` unless it is the one the folder's database recorded at its start."""
    text, digest = store.meta(CONFIG_KEY), store.meta(DIGEST_KEY)
    if text is None or digest is None:
        raise ConfigChanged(f"--resume: {where} records no config fingerprint (it was written by "
                            "an older robustlr, whose trial ids do not cover train.*, model and "
                            "evaluation): resuming could mix configurations; start a new run")
    if _digest(text) != digest:
        raise ConfigChanged(f"--resume: {where}: the recorded config does not match its "
                            "fingerprint (the database was edited); start a new run")
    current = json.dumps(_resolved(config), sort_keys=True)
    if current == text:
        return
    changed = changed_keys(json.loads(text), json.loads(current))
    shown = ", ".join(changed[:8]) + (f" and {len(changed) - 8} more" if len(changed) > 8 else "")
    raise ConfigChanged(f"--resume: {where}/config.yaml no longer matches the config the run "
                        f"started with (changed: {shown}); restore it, or start a new run")


def changed_keys(before: Any, after: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ (a list compares whole: one more schedule is
    ``schedules``)."""
    if isinstance(before, dict) and isinstance(after, dict):
        found: list[str] = []
        for key in sorted(set(before) | set(after)):
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in before or key not in after:
                found.append(name)
            else:
                found += changed_keys(before[key], after[key], name)
        return found
    return [] if before == after else [prefix or "(the whole config)"]
