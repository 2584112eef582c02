"""Report section: a ranking under constraints, e.g. the best robust accuracy among the
groups whose epsilon is at most 3 and attack success at most 10%. Groups are (schedule,
regime / poison / filter, LR scale); a group is admissible when the seed means of its trials
meet every bound, the rule ``robustlr gate`` applies. Groups that break a bound are listed
below the ranking with what they break, so a reader sees what the constraint cost. A poisoned
group whose attack success is above ``report.backdoored_asr`` (50%) is backdoored and never
qualifies, unless the user bounds asr themselves or sets it to null. Bounds and shares are in
percent, like the rest of the report."""

from __future__ import annotations

from robustlr.records import LOWER_IS_BETTER, PERCENT_METRICS
from robustlr.results.bounds import Bound, from_mapping
from robustlr.results.groups import GROUP_KEYS, label
from robustlr.results.report.document import Document
from robustlr.results.stats import group, interval


def constrained_section(document: Document, summaries: list[dict], settings) -> None:
    if settings is None or settings.rank_by is None:
        return
    usable = [r for r in summaries if r.get("status") not in ("failed", "diverged")]
    bounds = from_mapping("min", settings.min) + from_mapping("max", settings.max)
    metrics = list(dict.fromkeys([settings.rank_by, *(b.metric for b in bounds)]))
    admitted: list[tuple] = []
    excluded: list[tuple] = []
    backdoor = _backdoor_rule(settings, bounds)
    for key, runs in group(usable, GROUP_KEYS).items():
        means = {name: interval([r.get(name) for r in runs]) for name in metrics}
        broken = [_broken(bound, means[bound.metric]) for bound in bounds]
        broken = [text for text in broken if text]
        if backdoor is not None:
            asr = interval([r.get("asr") for r in runs])
            if asr.n and not backdoor.holds(asr.mean):
                broken.append(f"backdoored: asr {asr.mean * 100:.3g}% > {backdoor.shown(backdoor.limit):g}% "
                              "(report.backdoored_asr)")
        if not means[settings.rank_by].n:
            broken.append(f"no {settings.rank_by}")
        (excluded if broken else admitted).append((key, means, broken))
    lower = settings.rank_by in LOWER_IS_BETTER
    admitted.sort(key=lambda item: item[1][settings.rank_by].mean, reverse=not lower)
    rule = " and ".join(bound.text for bound in bounds) or "no bound"
    document.heading("Ranking under constraints")
    guard = ("" if backdoor is None else f" A backdoored group (attack success above "
             f"{backdoor.shown(backdoor.limit):g}%, report.backdoored_asr) never qualifies.")
    document.text(f"Best {settings.rank_by} ({'lower' if lower else 'higher'} is better) "
                  f"among the groups whose seed means satisfy {rule}: "
                  f"{len(admitted)} of {len(admitted) + len(excluded)} groups qualify.{guard}")
    header = ["rank", "group", "seeds", *[_title(m) for m in metrics]]
    document.table(header, [[str(rank), label(key), str(means[settings.rank_by].n),
                             *[_text(m, means[m]) for m in metrics]]
                            for rank, (key, means, _) in enumerate(admitted, 1)])
    if excluded:
        document.table(["excluded group", *[_title(m) for m in metrics], "breaks"],
                       [[label(key), *[_text(m, means[m]) for m in metrics],
                         "; ".join(broken)] for key, means, broken in excluded])


def _backdoor_rule(settings, bounds: list[Bound]) -> Bound | None:
    """The bound that keeps backdoored models out of the ranking: report.backdoored_asr, unless
    it is switched off (null) or the user bounded asr themselves."""
    limit = getattr(settings, "backdoored_asr", None)
    if limit is None or any(bound.metric == "asr" for bound in bounds):
        return None
    return Bound("max", "asr", limit / 100.0)


def _title(metric: str) -> str:
    return metric + (" %" if metric in PERCENT_METRICS else "")


def _text(metric: str, value) -> str:
    percent = metric in PERCENT_METRICS
    return value.text(scale=100.0 if percent else 1.0, digits=1 if percent else 3)


def _broken(bound: Bound, value) -> str | None:
    if bound.holds(value.mean if value.n else None):
        return None
    if not value.n:
        return f"no {bound.metric}"
    return (f"{bound.metric} {bound.shown(value.mean):.3g} "
            f"{'<' if bound.kind == 'min' else '>'} {bound.text.split()[-1]}")
