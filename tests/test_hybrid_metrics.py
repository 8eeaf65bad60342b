"""OTB metrics of hybrid.metrics against the got10k toolkit (independent reference) and closed forms."""

import numpy as np
import pytest

from hybrid import metrics

got10k_metrics = pytest.importorskip("got10k.utils.metrics")
from got10k.experiments.otb import ExperimentOTB  # noqa: E402


def _random_sequences(seed: int, n_seq: int = 5):
    rng = np.random.default_rng(seed)
    out = {}
    for k in range(n_seq):
        n = int(rng.integers(20, 200))
        gt = np.column_stack([rng.uniform(0, 300, n), rng.uniform(0, 200, n), rng.uniform(5, 80, (n, 2))])
        noise = rng.normal(0, rng.uniform(1, 30), (n, 4))
        pred = gt + noise
        pred[:, 2:] = np.abs(pred[:, 2:]) + 1
        pred[rng.random(n) < 0.1] += 200  # some far misses (IoU 0)
        out[f"seq{k}"] = (pred, gt)
    return out


class _Dataset:
    def __init__(self, seqs):
        self.seq_names = list(seqs)
        self._annos = [gt for _, gt in seqs.values()]

    def __len__(self):
        return len(self.seq_names)

    def __iter__(self):
        return iter([(None, a) for a in self._annos])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_per_box_metrics_equal_got10k(seed):
    for pred, gt in _random_sequences(seed).values():
        np.testing.assert_allclose(metrics.iou(pred, gt), got10k_metrics.rect_iou(pred.copy(), gt.copy()), atol=1e-12, rtol=0)
        np.testing.assert_allclose(metrics.center_error(pred, gt), got10k_metrics.center_error(pred, gt), atol=1e-12, rtol=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scores_equal_got10k_report(seed, tmp_path):
    """The whole got10k OTB report (result files on disk, first frame set to GT, curve averaging)."""
    seqs = _random_sequences(seed)
    exp = ExperimentOTB.__new__(ExperimentOTB)
    exp.dataset = _Dataset(seqs)
    exp.result_dir = str(tmp_path / "results")
    exp.report_dir = str(tmp_path / "reports")
    exp.nbins_iou, exp.nbins_ce = 21, 51
    exp.plot_curves = lambda names: None  # plotting is not under test
    (tmp_path / "results" / "mine").mkdir(parents=True)
    for name, (pred, _) in seqs.items():
        np.savetxt(tmp_path / "results" / "mine" / f"{name}.txt", pred, fmt="%.17g", delimiter=",")
    ref = exp.report(["mine"])["mine"]
    loaded = {n: (np.loadtxt(tmp_path / "results" / "mine" / f"{n}.txt", delimiter=","), gt) for n, (_, gt) in seqs.items()}
    ours = metrics.evaluate(loaded)
    assert abs(ours.auc - ref["overall"]["success_score"]) <= 1e-9
    assert abs(ours.precision_20 - ref["overall"]["precision_score"]) <= 1e-9
    np.testing.assert_allclose(ours.success_curve, ref["overall"]["success_curve"], atol=1e-9, rtol=0)
    np.testing.assert_allclose(ours.precision_curve, ref["overall"]["precision_curve"], atol=1e-9, rtol=0)
    for name in seqs:
        assert abs(ours.per_sequence[name]["auc"] - ref["seq_wise"][name]["success_score"]) <= 1e-9


def test_calc_curves_equal_got10k():
    seqs = _random_sequences(7, 1)
    pred, gt = seqs["seq0"]
    exp = ExperimentOTB.__new__(ExperimentOTB)
    exp.nbins_iou, exp.nbins_ce = 21, 51
    p = pred.copy()
    p[0] = gt[0]
    s_ref, p_ref = exp._calc_curves(got10k_metrics.rect_iou(p.copy(), gt.copy()), got10k_metrics.center_error(p, gt))
    s, pr = metrics.sequence_curves(pred, gt)
    np.testing.assert_allclose(s, s_ref, atol=1e-12, rtol=0)
    np.testing.assert_allclose(pr, p_ref, atol=1e-12, rtol=0)


def test_closed_form_cases():
    gt = np.array([[0.0, 0.0, 10.0, 10.0]] * 3)
    pred = np.array([[0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 10.0, 10.0], [100.0, 100.0, 10.0, 10.0]])
    np.testing.assert_allclose(metrics.iou(pred, gt), [1.0, 50 / 150, 0.0], atol=1e-12)
    np.testing.assert_allclose(metrics.center_error(pred, gt), [0.0, 5.0, np.hypot(100, 100)])
    s, p = metrics.sequence_curves(pred, gt)
    # IoUs 1, 1/3, 0 (the first is set to GT): IoU > τ
    expected = np.array([int(1 > t) + int(1 / 3 > t) + int(0 > t) for t in np.linspace(0, 1, 21)]) / 3
    np.testing.assert_allclose(s, expected)
    assert p[20] == pytest.approx(2 / 3)


def test_absent_ground_truth_is_skipped_and_nan_prediction_is_a_miss():
    gt = np.array([[0.0, 0.0, 10.0, 10.0], [np.nan] * 4, [0.0, 0.0, 10.0, 10.0]])
    pred = np.array([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0], [np.nan] * 4])
    s, p = metrics.sequence_curves(pred, gt)
    assert s[0] == pytest.approx(0.5) and p[50] == pytest.approx(0.5)


def test_paired_bootstrap_closed_forms():
    """A constant shift has a zero-width interval at the shift; a symmetric ±1 difference has mean 0
    and a standard error near the closed form σ/√n; mismatched sequence sets are refused."""
    from hybrid.metrics import paired_bootstrap

    a = {f"s{i}": 0.1 * i for i in range(20)}
    r = paired_bootstrap(a, {k: v - 0.05 for k, v in a.items()})
    assert r["diff"] == pytest.approx(0.05) and r["ci95"] == pytest.approx([0.05, 0.05]) and r["wins"] == 20
    b = {k: v + (1.0 if i % 2 else -1.0) for i, (k, v) in enumerate(sorted(a.items()))}
    r = paired_bootstrap(a, b, n_resamples=20_000)
    assert r["diff"] == pytest.approx(0.0, abs=1e-12) and r["se"] == pytest.approx(1 / np.sqrt(20), rel=0.05)
    assert r["ci95"][0] < 0 < r["ci95"][1] and r["wins"] == 10
    with pytest.raises(ValueError):
        paired_bootstrap(a, {"other": 1.0})
