"""The seed-spread summary (benchmarks/seed_spread.py): its statistics and its verdicts."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import seed_spread  # noqa: E402


def test_stats_are_the_sample_mean_sd_and_standard_error():
    s = seed_spread.stats([1.0, 2.0, 6.0])
    assert s["mean"] == pytest.approx(3.0)
    assert s["sd"] == pytest.approx(math.sqrt(7.0))  # ((4 + 1 + 9) / 2) ** 0.5
    assert s["se"] == pytest.approx(math.sqrt(7.0 / 3))
    assert s["n"] == 3 and s["per_seed"] == [1.0, 2.0, 6.0]


@pytest.mark.parametrize(
    ("a", "b", "verdict"),
    [
        ([5.0, 5.2, 4.9], [1.0, 1.1, 0.8], "A > B"),  # every seed, far beyond 2 se
        ([1.0, 1.1, 0.8], [5.0, 5.2, 4.9], "B > A"),
        ([1.0, 2.0, 3.0], [1.1, 1.9, 3.2], "tie"),  # the sign changes between seeds
        ([1.0, 1.0, 1.0], [0.9, 0.0, 0.95], "tie"),  # one sign, but within 2 se
        ([2.0], [1.0], "tie"),  # one seed decides nothing
    ],
)
def test_a_verdict_needs_every_seed_and_two_standard_errors(a, b, verdict):
    assert seed_spread.compare("A", a, "B", b)["verdict"] == verdict


def test_the_estimators_summary_and_its_markdown_from_job_files(tmp_path):
    for seed, (la, lb) in enumerate([(-110.0, -109.9), (-111.0, -110.8), (-109.5, -109.45)]):
        table = [{"latent_dim": 3, "test_elbo_trace": la, "test_elbo_meanfield": lb}]
        (tmp_path / f"estimators-seed{seed}.json").write_text(json.dumps({"table": table}))
    summary = seed_spread.summarise_estimators(tmp_path, [0, 1, 2])
    c = summary["nz3"]["comparison"]
    assert c["difference"]["per_seed"] == pytest.approx([0.1, 0.2, 0.05])
    assert c["verdict"] == "L^B > L^A"
    text = seed_spread.markdown({"estimators": summary})
    assert "| 3 | −110.17 ± 0.76 | −110.05 ± 0.69 | +0.12 ± 0.08 (+0.10, +0.20, +0.05) |" in text
