"""Fidelity metrics against brute-force references and closed-form cases."""

import numpy as np
import pytest
from scipy import stats

from sim_events.formats import make_events
from sim_events.metrics import compare, match_count, phase_cv


def random_events(rng, n, w=6, h=5, t0=0, t1=200_000):
    return make_events(rng.integers(0, w, n), rng.integers(0, h, n), np.sort(rng.integers(t0, t1, n)),
                       rng.integers(0, 2, n))


def brute_force_matches(sim, real, tol):
    """Reference greedy matcher: real events in time order take the earliest unused sim event."""
    used = np.zeros(len(sim), bool)
    m = 0
    for i in np.argsort(real["t"], kind="stable"):
        r = real[i]
        cand = np.flatnonzero(~used & (sim["x"] == r["x"]) & (sim["y"] == r["y"]) & (sim["p"] == r["p"])
                              & (np.abs(sim["t"] - r["t"]) <= tol))
        if len(cand):
            used[cand[np.argmin(sim["t"][cand])]] = True
            m += 1
    return m


@pytest.mark.parametrize("seed", range(5))
def test_greedy_matching_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    sim = random_events(rng, 300)
    real = random_events(rng, 250)
    assert match_count(sim, real, 6, 5000) == brute_force_matches(sim, real, 5000)


def test_identical_and_shifted_streams():
    rng = np.random.default_rng(0)
    ev = random_events(rng, 2000, w=40, h=20, t1=400_000)
    same = compare(ev, ev, 40, 20, 0, 400_000, 40_000)
    assert same["count_ratio"] == 1 and same["f1_5ms"] == 1
    assert same["pixel_r_on"] == pytest.approx(1) and same["rate_r"] == pytest.approx(1)
    late = ev.copy()
    late["t"] += 6_000  # beyond +-5 ms: no event can match its own copy
    m = compare(late, ev, 40, 20, 0, 500_000, 40_000)
    assert m["f1_5ms"] < 0.2


def test_pixel_and_rate_correlations_equal_scipy_pearson():
    rng = np.random.default_rng(1)
    a = random_events(rng, 3000, w=8, h=8, t1=400_000)
    b = random_events(rng, 2500, w=8, h=8, t1=400_000)
    m = compare(a, b, 8, 8, 0, 400_000, 40_000)
    on = lambda e: np.bincount((e["y"].astype(int) * 8 + e["x"])[e["p"]], minlength=64)  # noqa: E731
    assert m["pixel_r_on"] == pytest.approx(stats.pearsonr(on(a), on(b))[0])
    bins = np.arange(0, 400_001, 40_000)
    ra, rb = np.histogram(a["t"], bins)[0], np.histogram(b["t"], bins)[0]
    assert m["rate_r"] == pytest.approx(stats.pearsonr(ra, rb)[0])
    assert m["count_ratio"] == pytest.approx(3000 / 2500)


def test_phase_cv_flat_vs_frame_locked():
    t = np.arange(0, 400_000, 10)  # uniform in time: every phase bin equal
    assert phase_cv(t, 0, 40_000) == pytest.approx(0, abs=1e-12)
    locked = np.repeat(np.arange(0, 400_000, 40_000), 100)  # all at frame times: one bin of 8
    assert phase_cv(locked, 0, 40_000) == pytest.approx(np.sqrt(7))  # std/mean of [8, 0 x 7]
