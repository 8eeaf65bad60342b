"""neurosim.scattering: speckle statistics against closed forms, bit-reproducibility, the balance
loss and the metrics against hand-worked values, int8 transfer and its integer export, the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from neurosim.scattering.speckle import SpeckleParams, camera, contrast, encode, intensity, make_medium, simulate

stats = pytest.importorskip("scipy.stats")


def _objects(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(size=(n, size, size))


def test_fully_developed_speckle_is_exponential_with_contrast_one():
    p = SpeckleParams(encoding="phase")
    i = intensity(_objects(4), p, make_medium(p))
    for img in i:  # given the object, the 1024 pixels are independent exponential draws
        assert abs(contrast(img) - 1.0) < 0.08
        assert stats.kstest(img.ravel() / img.mean(), "expon").pvalue > 0.01
    assert abs(contrast(i) - 1.0) < 0.04
    assert abs(i.mean() - 1.0) < 0.05  # phase objects are fully on: mean intensity 1


def test_partially_developed_speckle_matches_the_random_phasor_sum():
    """K unit phasors weighted by c = V·u: C² = 1 − Σ|c|⁴/(Σ|c|²)², and not exponential."""
    p = SpeckleParams(encoding="phase", modes=3, medium_seed=5)
    rng = np.random.default_rng([5, 0])  # make_medium's draws, repeated to get V
    rng.uniform(0.0, 2 * math.pi, (1024, 3))
    vr, vi = np.rint(rng.standard_normal((3, 1024)) * 128), np.rint(rng.standard_normal((3, 1024)) * 128)
    x = _objects(6, seed=1)
    ur, ui, _ = encode(x, p)
    c = (ur @ vr.T - ui @ vi.T) + 1j * (ur @ vi.T + ui @ vr.T)  # (B, K)
    predicted = 1 - (np.abs(c) ** 4).sum(1) / ((np.abs(c) ** 2).sum(1)) ** 2
    measured = np.array([contrast(img) ** 2 for img in intensity(x, p, make_medium(p))])
    np.testing.assert_allclose(measured, predicted, atol=0.06)
    assert measured.max() < 0.8
    img = intensity(x[:1], p, make_medium(p))[0]
    assert stats.kstest(img.ravel() / img.mean(), "expon").pvalue < 0.01


def test_partial_coherence_lowers_contrast_to_one_over_sqrt_l():
    p = SpeckleParams(encoding="phase", coherence_modes=4, size=24)
    i = intensity(_objects(3, 24), p, make_medium(p))
    assert abs(contrast(i) - 0.5) < 0.04
    assert stats.kstest(i[0].ravel() / i[0].mean(), "gamma", args=(4, 0, 0.25)).pvalue > 0.01


def test_drifting_medium_decorrelates_as_one_minus_eps_to_the_k():
    eps = 0.1
    p = SpeckleParams(size=16, encoding="phase", decorrelation=eps, photons=1e9, read_noise=0.0, bits=16, full_well=20.0)
    x = np.repeat(_objects(1, 16), 11, axis=0)  # the same object at 11 drift steps
    speckle, _ = simulate(x, p)
    for k in (1, 5, 10):
        r = np.corrcoef(speckle[0].ravel(), speckle[k].ravel())[0, 1]
        assert abs(r - (1 - eps) ** k) < 0.1, (k, r)


def test_camera_counts_have_the_poisson_plus_read_noise_moments():
    p = SpeckleParams(size=32, photons=400.0, read_noise=10.0, bits=12, full_well=8.0)
    counts = camera(np.full((40, 32, 32), 0.5), p).astype(np.float64)
    gain = 4095 / (8.0 * 400.0)
    assert abs(counts.mean() - 200 * gain) < 0.02 * 200 * gain
    variance = (200 + 100) * gain**2 + 1 / 12  # shot + read noise, then the ADC's rounding
    assert abs(counts.var() - variance) < 0.05 * variance
    saturated = camera(np.full((1, 32, 32), 100.0), p)
    assert (saturated == 4095).all()


def test_simulation_is_bit_reproducible_and_independent_of_chunking():
    p = SpeckleParams(size=16, decorrelation=0.05, drift_every=3)
    x = _objects(10, 16, seed=3)
    a, ca = simulate(x, p)
    b, cb = simulate(x, p)
    c1, _ = simulate(x[:4], p)
    c2, _ = simulate(x[4:], p, start=4)
    assert a.tobytes() == b.tobytes() and ca.tobytes() == cb.tobytes()
    assert a.tobytes() == np.concatenate([c1, c2]).tobytes()
    other, _ = simulate(x, SpeckleParams(size=16, decorrelation=0.05, drift_every=3, medium_seed=1))
    assert not np.array_equal(a, other)
    _, c_other_stream = simulate(x, p, stream=1)  # same medium, independent camera noise
    diff = c_other_stream.astype(int) - ca
    assert diff.any() and abs(np.corrcoef(diff[::2].ravel(), diff[1::2].ravel())[0, 1]) < 0.1


def test_balance_loss_hand_worked():
    torch = pytest.importorskip("torch")
    from neurosim.scattering.functional import balance_loss, smoothness, weight_penalty

    pred = torch.zeros(1, 5, 5)
    pred[0, 2, 2] = 1.0
    target = torch.zeros(1, 5, 5)
    # Sobel: 1+4+1+1+4+1 = 12 (twice), Laplacian: 4·1 + 16 = 20 -> 44
    assert float(smoothness(pred)) == pytest.approx(44.0)
    assert float(balance_loss(pred, target, 0.0)) == pytest.approx(1024 / 25)
    assert float(balance_loss(pred, target, 0.008)) == pytest.approx(1024 / 25 + 0.008 * 44)
    # a corner pixel: zero padding keeps only the in-image parts of each kernel (4+1, 4+1, 16+1+1)
    corner = torch.zeros(1, 5, 5)
    corner[0, 0, 0] = 1.0
    assert float(smoothness(corner)) == pytest.approx(5 + 5 + 18)
    lin = torch.nn.Linear(2, 1)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, -2.0]]))
        lin.bias.fill_(5.0)  # biases are not penalised
    assert float(weight_penalty(lin, l1=0.5, l2=0.25).detach()) == pytest.approx(0.5 * 3 + 0.25 * 5)


def test_metrics_against_closed_forms():
    from neurosim.scattering.functional import pearson, psnr, ssim

    t = np.zeros((1, 16, 16))
    assert psnr(t + 0.1, t)[0] == pytest.approx(20.0)
    a, b = np.full((1, 16, 16), 0.2), np.full((1, 16, 16), 0.6)
    c1 = 0.01**2
    assert ssim(a, b)[0] == pytest.approx((2 * 0.2 * 0.6 + c1) / (0.2**2 + 0.6**2 + c1))
    x = np.random.default_rng(0).uniform(size=(2, 16, 16))
    assert ssim(x, x) == pytest.approx([1.0, 1.0])
    y = 0.5 * x + 0.2
    np.testing.assert_allclose(pearson(y, x), 1.0)
    np.testing.assert_allclose(pearson(x[:1], x[1:]), np.corrcoef(x[0].ravel(), x[1].ravel())[0, 1])
    # one window (7x7 image): SSIM in closed form from the sample statistics
    p, q = x[0, :7, :7], x[1, :7, :7]
    vp, vq, cov = p.var(ddof=1), q.var(ddof=1), np.cov(p.ravel(), q.ravel())[0, 1]
    mp, mq, c2 = p.mean(), q.mean(), 0.03**2
    want = (2 * mp * mq + c1) * (2 * cov + c2) / ((mp * mp + mq * mq + c1) * (vp + vq + c2))
    assert ssim(p[None], q[None])[0] == pytest.approx(want)


def test_int8_head_transfer_is_reproducible_and_exports_to_integers():
    torch = pytest.importorskip("torch")
    from neurosim.scattering.train import (
        FinetuneParams, TrainParams, finetune, head_to_integer, reconstruct, reconstruct_integer, train,
    )

    torch.set_num_threads(1)
    p = SpeckleParams(size=16)
    x = _objects(64, 16, seed=4)
    s, _ = simulate(x, p)
    tp = TrainParams(arch="ocn", widths=[4, 8], head_channels=4, steps=6, batch_size=16)
    m1, m2 = train(s, x, tp), train(s, x, tp)
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))
    frozen = {k: v.clone() for k, v in m1.body.state_dict().items()}
    fp = FinetuneParams(samples=32, steps=8, batch_size=8, scheme="eoq")
    f1 = finetune(m1, s, x, fp)
    f2 = finetune(m2, s, x, fp)
    assert all(torch.equal(a, b) for a, b in zip(f1.state_dict().values(), f2.state_dict().values()))
    assert all(torch.equal(frozen[k], v) for k, v in f1.body.state_dict().items())  # body untouched
    assert type(f1.head[0]).__name__ == "QConv2d"
    net = head_to_integer(f1, s)
    pred, ipred = reconstruct(f1, s), reconstruct_integer(net, f1, s)
    assert np.abs(ipred - pred).max() <= 1 / 128 + 1e-6
    assert np.abs(ipred - pred)[pred < 127.5 / 128].max() <= 1 / 256 + 1e-6


def test_cli_simulate_train_finetune_eval(tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    from neurosim.cli import main

    d, run, ft, ev = (str(tmp_path / n) for n in ("d.safetensors", "run", "ft", "ev"))
    common = ["--set", "speckle.size=16", "--set", "objects=shapes", "-q"]
    assert main(["scatter", "simulate", "-o", d, "--set", "count=48", *common]) == 0
    assert main(["scatter", "train", d, "-o", run, "--set", "arch=fcn", "--set", "hidden=32", "--set", "steps=4", "-q"]) == 0
    assert main(["scatter", "finetune", run, d, "-o", ft, "--set", "samples=16", "--set", "steps=4",
                 "--set", "scheme=eoq", "-q"]) == 0
    assert main(["scatter", "eval", ft, d, "-o", ev, "--show", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["integer_vs_model_max_abs"] <= 1 / 128 + 1e-6 and out["same_medium"]
    assert (tmp_path / "ev" / "reconstructions.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "ft" / "head_int8" / "network.json").is_file()
    # bad input: one line, exit 2, nothing written
    assert main(["scatter", "simulate", "-o", str(tmp_path / "x.safetensors"), "--set", "speckle.encoding=holo"]) == 2
    assert main(["scatter", "eval", run, str(tmp_path / "missing.safetensors"), "-o", str(tmp_path / "e2")]) == 2
    assert main(["scatter", "finetune", ft, d, "-o", str(tmp_path / "ft2")]) == 2  # already fine-tuned
    assert main(["scatter", "train", d, "-o", str(tmp_path / "r2"), "--set", "steps=100000000"]) == 2  # runaway time
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and all(line.startswith("neurosim: error:") for line in err)
    assert "steps = 100000000 is out of range" in err[3]
    assert not (tmp_path / "x.safetensors").exists() and not (tmp_path / "ft2").exists()
