"""Issue 24: a one-example gap was called significant. On 359 test examples cosine scored
302/305/298 and onecycle 301/304/297 in three seeds; the paired t-test on three (nearly)
identical differences saw no variance and printed p = 0.000 ("behind"). Differences are now
judged over seeds and test examples together (results.stats.paired_over_examples)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from fake_run import DEFAULT_SCHEDULES, THREATS, fake_run

from robustlr.config import ReportConfig
from robustlr.results.report import compose
from robustlr.results.stats import example_count, paired, paired_over_examples, sign_test

N = 359
COSINE, ONECYCLE = (302, 305, 298), (301, 304, 297)


def shares(counts, dtype=float):
    """seed -> accuracy; float32 as a torch mean would give it (the spread the t-test saw)."""
    return {seed: float(dtype(count / N)) for seed, count in enumerate(counts)}


@pytest.mark.parametrize("dtype", [float, np.float32])
def test_three_seeds_with_identical_one_example_gaps_are_tied(dtype):
    a, b = shares(COSINE, dtype), shares(ONECYCLE, dtype)
    judged = paired_over_examples(a, b, N)
    assert judged.p == 1.0 and judged.examples == N and "sign test" in judged.method
    assert judged.mean == pytest.approx(1 / N)


def test_the_seed_test_alone_called_the_float32_gap_significant():
    """The defect this replaces: the t-test saw float rounding as a seed spread."""
    assert paired(shares(COSINE, np.float32), shares(ONECYCLE, np.float32)).p < 1e-6


def test_a_consistent_gap_of_many_examples_stays_significant():
    behind = (290, 292, 287)  # 12, 13, 11 examples on the three seeds
    judged = paired_over_examples(shares(COSINE), shares(behind), N)
    reference = paired(shares(COSINE), shares(behind))
    assert judged.p == pytest.approx(reference.p) and judged.p < 0.01  # the seeds decide here
    assert judged.mean == pytest.approx(reference.mean)


def test_few_examples_in_total_are_not_enough_even_when_seeds_agree():
    # 2 examples on each of 3 seeds: 6 discordant examples at best, sign test p = 2 / 2^6
    judged = paired_over_examples(shares((302, 305, 298)), shares((300, 303, 296)), N)
    assert judged.p == pytest.approx(2 * 0.5 ** 6)
    # identical gaps of 5 examples: no seed spread, 15 examples all one way decide
    five = paired_over_examples(shares((302, 305, 298)), shares((297, 300, 293)), N)
    assert five.p == pytest.approx(2 * 0.5 ** 15) and five.p < 0.05


def test_the_sign_test_is_the_exact_binomial():
    assert sign_test([0, 0]) == 1.0
    assert sign_test([3]) == pytest.approx(0.25)
    assert sign_test([4, -1]) == pytest.approx(2 * sum(math.comb(5, k) for k in (0, 1)) / 32)


def test_the_example_count_is_per_metric_and_unknown_when_a_record_lacks_it():
    records = [{"test_examples": 359, "robust_examples": 100}, {"test_examples": 359}]
    assert example_count(records, "clean_acc") == 359
    assert example_count(records, "robust_acc") is None
    assert example_count(records, "epsilon") is None


def _report(gap_counts):
    summaries, rows = fake_run(DEFAULT_SCHEDULES[:2], THREATS[:1], seeds=3)
    for record in summaries:
        counts = COSINE if record["schedule"] == DEFAULT_SCHEDULES[0] else gap_counts
        record.update(clean_acc=shares(counts, np.float32)[record["seed"]], test_examples=N)
    return compose("t", summaries, rows, ReportConfig())


def test_the_report_calls_the_one_example_gap_tied_and_names_the_method():
    document = _report(ONECYCLE)
    (sentences,) = [v for k, v in document.blocks if k == "bullets"]
    assert "paired over 3 seeds and 359 test examples" in sentences[0]
    assert sentences[0].endswith("is tied with it within noise.")
    (table,) = [t for k, t in document.blocks if k == "table" and t.header[0] == "threat model"]
    assert "(tied)" in table.rows[1][5]
    text = " ".join(v for k, v in document.blocks if k == "text")
    assert "exact sign test over the fewest test examples" in text


def test_the_report_still_calls_a_twelve_example_gap_behind():
    document = _report((290, 292, 287))
    (sentences,) = [v for k, v in document.blocks if k == "bullets"]
    assert "reliably behind" in sentences[0] and " is 3.3 ± " in sentences[0]
