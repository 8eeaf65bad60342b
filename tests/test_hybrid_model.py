"""Model pieces against closed forms and independent references (brute force, intnet.run_reference)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hybrid.model import VARIANTS, DashNet, ModelConfig
from hybrid.tcf import complementary_filter
from hybrid.template import normalized_correlate, sample_template, soft_argmax


def test_tcf_textbook_closed_form():
    """Constant α, constant SNN motion d and constant ANN estimate a: x_t = α(x_{t-1} + d) + (1-α)a,
    whose solution is x_t = a + αd/(1-α) + α^t (x_0 - a - αd/(1-α))."""
    T, alpha, d, a, x0 = 40, 0.9, 0.7, 5.0, 1.0
    snn = torch.arange(T + 1, dtype=torch.float64)[:, None, None].expand(T + 1, 1, 2) * d
    ann = torch.full((T, 1, 2), a, dtype=torch.float64)
    out = complementary_filter(torch.full((1, 2), x0, dtype=torch.float64), snn, ann, torch.zeros(T, dtype=torch.bool),
                               torch.tensor(alpha, dtype=torch.float64), torch.tensor(alpha, dtype=torch.float64))
    t = np.arange(1, T + 1)
    fixed = a + alpha * d / (1 - alpha)
    np.testing.assert_allclose(out[:, 0, 0].numpy(), fixed + alpha**t * (x0 - fixed), rtol=1e-12)


def test_tcf_reset_at_frame_then_dead_reckoning():
    T = 10
    snn = torch.cumsum(torch.ones(T + 1, 1, 2), 0)
    ann = torch.full((T, 1, 2), 100.0)
    fresh = torch.zeros(T, dtype=torch.bool)
    fresh[0] = True
    out = complementary_filter(torch.zeros(1, 2), snn, ann, fresh, torch.tensor(0.0), torch.tensor(1.0))
    np.testing.assert_allclose(out[:, 0, 0].numpy(), 100.0 + np.arange(T))


def test_normalized_correlation_brute_force():
    g = torch.Generator().manual_seed(0)
    f, z = torch.randn(2, 4, 7, 9, generator=g, dtype=torch.float64), torch.randn(2, 4, 3, 3, generator=g, dtype=torch.float64)
    x = normalized_correlate(f, z, eps=1e-12)
    fp = F.pad(f, (1, 1, 1, 1))
    for i in range(7):
        for j in range(9):
            p = fp[:, :, i : i + 3, j : j + 3]
            p0, z0 = p - p.mean((1, 2, 3), keepdim=True), z - z.mean((1, 2, 3), keepdim=True)
            ref = (p0 * z0).sum((1, 2, 3)) / (p0.flatten(1).norm(dim=1) * z0.flatten(1).norm(dim=1))
            np.testing.assert_allclose(x[:, i, j].numpy(), ref.numpy(), rtol=1e-9, atol=1e-12)


def test_soft_argmax_of_a_peak_is_the_cell_centre():
    r = torch.full((1, 16, 16), -1e4)
    r[0, 5, 11] = 0.0
    np.testing.assert_allclose(soft_argmax(r, 4)[0].numpy(), [11 * 4 + 1.5, 5 * 4 + 1.5])


def test_ann_temperature_moves_the_centre_onto_the_main_peak():
    """Two peaks (heights 3 and 2 over a flat 0 background, 256 cells): at τ the soft-argmax is
    Σ_i e^{R_i/τ} c_i / Σ_i e^{R_i/τ} (closed form, numpy). At τ = 1 the background and the
    look-alike pull the centre ≈ 17 px off the main peak; at τ = 0.1 it sits on it. The model's
    x_ann uses model.ann_temperature and nothing else (model.temperature stays for the SNN)."""
    r = torch.zeros(1, 16, 16, dtype=torch.float64)
    r[0, 3, 4], r[0, 12, 13] = 3.0, 2.0
    c = np.stack(np.meshgrid(np.arange(16) * 4 + 1.5, np.arange(16) * 4 + 1.5), -1).reshape(-1, 2)
    for tau in (1.0, 0.1):
        wts = np.exp(r[0].numpy().reshape(-1) / tau)
        np.testing.assert_allclose(soft_argmax(r, 4, tau)[0].numpy(), wts @ c / wts.sum(), rtol=1e-12)
    assert np.linalg.norm(soft_argmax(r, 4, 1.0)[0].numpy() - [17.5, 13.5]) > 15
    assert np.linalg.norm(soft_argmax(r, 4, 0.1)[0].numpy() - [17.5, 13.5]) < 0.1
    torch.manual_seed(0)
    unit = {"frame": torch.rand(1, 1, 32, 32), "events": torch.rand(1, 6, 2, 32, 32), "start_box": torch.tensor([[10.0, 10, 8, 8]]),
            "template_frame": torch.rand(1, 1, 32, 32), "template_box": torch.tensor([[10.0, 10, 8, 8]])}
    model = DashNet(ModelConfig(variant="ann_only", search_size=32, warmup_bins=1, ann_temperature=0.2, temperature=5.0)).eval()
    with torch.no_grad():
        out = model(unit)
    np.testing.assert_allclose(out["x_ann"].numpy(), soft_argmax(out["r_ann"], 4, 0.2).numpy(), rtol=1e-6)


def test_template_sampling_is_exact_on_a_linear_map():
    """Bilinear sampling reproduces a linear function of the pixel position exactly."""
    h = w = 16
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    px, py = xs * 4 + 1.5, ys * 4 + 1.5  # cell centres in pixels
    fmap = (2 * px + 3 * py)[None, None]
    box = torch.tensor([[10.0, 20.0, 12.0, 9.0]], dtype=torch.float64)
    z = sample_template(fmap, box, 4, 3)[0, 0]
    cx = 10.0 + (np.arange(3) + 0.5) / 3 * 12.0 - 0.5
    cy = 20.0 + (np.arange(3) + 0.5) / 3 * 9.0 - 0.5
    np.testing.assert_allclose(z.numpy(), 2 * cx[None, :] + 3 * cy[:, None], rtol=1e-12)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_runs_and_gives_a_box_per_step(variant):
    torch.manual_seed(0)
    m = DashNet(ModelConfig(variant=variant, search_size=32, ann_channels=(4, 8, 8), snn_channels=(4, 8, 8)))
    B, W, T, S = 2, 5, 7, 32
    unit = {"frame": torch.rand(B, 1, S, S), "template_frame": torch.rand(B, 1, S, S),
            "template_box": torch.tensor([[10.0, 10, 8, 8]] * B), "start_box": torch.tensor([[11.0, 10, 8, 8]] * B),
            "events": (torch.rand(B, W + T, 2, S, S) < 0.05).float()}
    out = m(unit)
    assert out["boxes"].shape == (T, B, 4) and torch.isfinite(out["boxes"]).all()
    out["boxes"].sum().backward()


def test_exported_snn_layer_matches_the_float_stbp_neuron():
    """The integer SNN layer (run by neurosim.intnet.run_reference) spikes exactly like the float
    STBP conv layer when weights, bias and threshold lie on the 2^-f grid."""
    from hybrid.export import snn_layers
    from neurosim.intnet import InputSpec, IntNetwork, run_reference

    torch.manual_seed(1)
    m = DashNet(ModelConfig(variant="snn_only", search_size=16, snn_channels=(4, 8, 8), snn_threshold=0.5))
    conv = m.snn.first[0]
    with torch.no_grad():
        conv.weight.copy_(torch.round(conv.weight * 64) / 64)
        conv.bias.copy_(torch.round(conv.bias * 64) / 64)
    layer = snn_layers(m)[0]
    f = int(round(np.log2(layer.weight.astype(float).max() / conv.weight.max().item()))) if conv.weight.max() > 0 else 0
    assert np.allclose(layer.weight / 2.0**f, conv.weight.detach().numpy())
    x = (torch.rand(30, 1, 2, 16, 16) < 0.2).float()
    with torch.no_grad():
        ref = m.snn.first(x)[:, 0].numpy()
    net = IntNetwork("t", {"events": InputSpec((2, 16, 16), 0, 30)}, [layer], [layer.name])
    got = run_reference(net, {"events": x[:, 0].numpy().astype(np.int64)})[layer.name]
    assert ref.sum() > 0
    np.testing.assert_array_equal(got, ref)


def test_tcf_hold_one_is_exact_dead_reckoning_between_frames():
    """alpha_hold = 1 (config ≥ 1): α_hold is exactly 1 and frozen, so between frames the estimate
    is the frame-step value plus the summed SNN motion (closed form), whatever the held ANN says."""
    from hybrid.tcf import TCF

    tcf = TCF(alpha_frame=0.25, alpha_hold=1.0)
    a_f, a_h = tcf.alphas
    assert float(a_h) == 1.0 and not tcf.logit_hold.requires_grad and tcf.logit_frame.requires_grad
    T, x0, ann = 12, 3.0, 40.0
    steps = torch.tensor([0.0, 1.5, -0.5, 2.0, 0.25, 1.0, 3.0, -1.0, 0.5, 0.0, 2.5, 1.0, -2.0], dtype=torch.float64)
    snn = torch.cumsum(steps, 0)[:, None, None].expand(T + 1, 1, 2)
    fresh = torch.zeros(T, dtype=torch.bool)
    fresh[0] = True
    out = tcf(torch.full((1, 2), x0, dtype=torch.float64), snn, torch.full((T, 1, 2), ann, dtype=torch.float64), fresh)
    first = 0.25 * (x0 + steps[1].item()) + 0.75 * ann
    want = first + np.concatenate([[0.0], np.cumsum(steps[2:].numpy())])
    np.testing.assert_allclose(out[:, 0, 0].detach().numpy(), want, rtol=1e-6)


def test_alpha_and_template_spacing_are_checked():
    from neurosim.errors import ParameterError

    for bad in ({"alpha_hold": 1.5}, {"alpha_frame": 1.0}, {"alpha_hold": 0.0}, {"template_spacing": "pixel"}):
        with pytest.raises(ParameterError):
            ModelConfig(**bad).check()


def test_cell_spaced_template_has_the_correlation_geometry():
    """template_spacing = "cell": the k×k template samples are the k×k feature cells centred on the
    target, so the NCC response of a feature map with itself peaks exactly at the target's cell."""
    m = DashNet(ModelConfig(variant="ann_only", search_size=64, template_spacing="cell", template_size=5))
    g = torch.Generator().manual_seed(3)
    fmap = torch.randn(1, 6, 16, 16, generator=g, dtype=torch.float64)
    box = torch.tensor([[4 * 9 + 1.5 - 10.0, 4 * 6 + 1.5 - 7.0, 21.0, 15.0]], dtype=torch.float64)  # centre on cell (6, 9)
    z = sample_template(fmap, m.template_box(box, *m.cfg.ann_template), 4, 5)
    np.testing.assert_allclose(z[0].numpy(), fmap[0, :, 4:9, 7:12].numpy(), rtol=1e-9, atol=1e-12)
    r = normalized_correlate(fmap, z, eps=1e-12)[0]
    assert divmod(int(r.argmax()), 16) == (6, 9) and abs(float(r.max()) - 1.0) < 1e-9


def test_ann_template_geometry_of_its_own():
    """ann_template_size / ann_template_spacing give the ANN a 5×5 cell template while the SNN keeps
    a 3×3 box template: the templates, the scale head and the exported correlation kernels have
    those sizes, the adapter (which needs one geometry) is left out, and every variant still runs."""
    from hybrid.export import export_model

    cfg = dict(search_size=32, ann_channels=(4, 8, 8), snn_channels=(4, 8, 8), ann_template_size=5, ann_template_spacing="cell")
    unit = {"frame": torch.rand(1, 1, 32, 32), "template_frame": torch.rand(1, 1, 32, 32),
            "template_box": torch.tensor([[10.0, 10, 8, 8]]), "start_box": torch.tensor([[11.0, 10, 8, 8]]),
            "events": (torch.rand(1, 8, 2, 32, 32) < 0.05).float()}
    for variant in VARIANTS:
        m = DashNet(ModelConfig(variant=variant, **cfg))
        assert m.template(unit["template_frame"], unit["template_box"]).shape == (1, 8, 5, 5)
        assert m.scale_head.in_features == 8 * 25
        with torch.no_grad():
            m.adapter.weight.fill_(100.0)  # would swamp the SNN template if it were used
            out = m(unit)
        assert out["boxes"].shape == (3, 1, 4) and torch.isfinite(out["boxes"]).all()
        if variant == "full":
            same = DashNet(ModelConfig(variant="full", **cfg))
            same.load_state_dict(m.state_dict())
            with torch.no_grad():
                same.adapter.weight.zero_()
                np.testing.assert_array_equal(same(unit)["r_snn"].numpy(), out["r_snn"].numpy())
            net = export_model(m)
            kernels = {l.name: l.weight.shape[-1] for l in net.layers if l.name in ("ann_corr", "snn_corr")}
            assert kernels == {"ann_corr": 5, "snn_corr": 3}
    with pytest.raises(Exception, match="ann_template_spacing"):
        ModelConfig(ann_template_spacing="ring").check()


def test_size_hold_changes_only_the_box_size_and_not_training():
    """size_estimation = "hold": same centres as "ann", sizes = the start box's, and the training
    loss and every gradient are identical (the box loss uses centres only)."""
    import dataclasses

    from hybrid.train import TrainConfig, unit_loss

    torch.manual_seed(0)
    cfg = ModelConfig(variant="full", search_size=32, ann_channels=(4, 8, 8), snn_channels=(4, 8, 8))
    ann = DashNet(cfg)
    with torch.no_grad():
        ann.scale_head.bias.fill_(0.3)  # a non-trivial size estimate
    hold = DashNet(dataclasses.replace(cfg, size_estimation="hold"))
    hold.load_state_dict(ann.state_dict())
    B, W, T, S = 2, 5, 6, 32
    g = torch.Generator().manual_seed(1)
    unit = {"frame": torch.rand(B, 1, S, S, generator=g), "template_frame": torch.rand(B, 1, S, S, generator=g),
            "template_box": torch.tensor([[10.0, 10, 8, 8]] * B), "start_box": torch.tensor([[11.0, 10, 8, 6]] * B),
            "events": (torch.rand(B, W + T, 2, S, S, generator=g) < 0.05).float()}
    targets = {"ann_centre": torch.full((B, 2), 15.0), "ann_valid": torch.ones(B), "ann_wh": torch.full((B, 2), 9.0),
               "snn_centres": torch.full((W + T, B, 2), 15.0), "snn_valid": torch.ones(W + T, B),
               "out_centres": torch.full((T, B, 2), 16.0), "out_valid": torch.ones(T, B)}
    grads, losses = [], []
    for m in (ann, hold):
        out = m(unit)
        loss, _ = unit_loss(m, out, targets, unit, TrainConfig())
        loss.backward()
        losses.append(float(loss.detach()))
        grads.append({n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None})
        if m is ann:
            centres_a, wh_a = out["boxes"][..., :2] + (out["boxes"][..., 2:] - 1) / 2, out["boxes"][..., 2:]
        else:
            centres_h, wh_h = out["boxes"][..., :2] + (out["boxes"][..., 2:] - 1) / 2, out["boxes"][..., 2:]
    torch.testing.assert_close(centres_h, centres_a)
    assert torch.equal(wh_h, unit["start_box"][None, :, 2:].expand(T, B, 2))
    assert not torch.allclose(wh_a, wh_h)
    assert losses[0] == losses[1] and grads[0].keys() == grads[1].keys()
    for n in grads[0]:
        torch.testing.assert_close(grads[1][n], grads[0][n], rtol=0, atol=1e-6)


def test_response_attention_picks_the_look_alike_that_moved():
    """Two identical response peaks (two look-alikes); spikes only around the second one in the
    warm-up bins: with the motion prior R + γ·A the soft-argmax moves to the one that moved, and
    where nothing spiked the prior is one constant (no effect on the soft-argmax)."""
    from hybrid.attention import SpikeAttention

    att = SpikeAttention(stride=2, mode="response")
    with torch.no_grad():  # a trained-like gate (the init is deliberately mild)
        att.conv.weight.fill_(1.0)
        att.gamma.fill_(5.0)
    r = torch.zeros(1, 8, 8)
    r[0, 1, 1] = r[0, 6, 6] = 6.0  # equal evidence at cells (1, 1) and (6, 6)
    still = torch.zeros(5, 1, 8, 16, 16)  # W = 5 bins of first-layer spikes (C = 8, stride 2 → 16×16)
    moved = still.clone()
    moved[:, 0, :, 12:14, 12:14] = 1.0  # the second look-alike spiked (cell (6, 6) of the 8×8 grid)
    # closed form of the prior: γ·σ(conv3×3(log(1 + avgpool2(rate)/ε))), ε = 0.01
    a = torch.zeros(1, 1, 10, 10)
    a[0, 0, 1:9, 1:9] = torch.log1p(F.avg_pool2d(moved.mean(dim=(0, 2))[:, None], 2)[0, 0] / 0.01)
    want = 5.0 * torch.sigmoid(F.conv2d(a, torch.ones(1, 1, 3, 3)) - 3.0)[:, 0]
    with torch.no_grad():
        torch.testing.assert_close(att.response(r, moved) - r, want)
    centre = lambda resp: soft_argmax(resp, 4)[0]  # noqa: E731
    c1, c2 = torch.tensor([1 * 4 + 1.5] * 2), torch.tensor([6 * 4 + 1.5] * 2)
    with torch.no_grad():
        mid = centre(att.response(r, still))
        picked = centre(att.response(r, moved))
    torch.testing.assert_close(mid, centre(r))  # uniform prior: unchanged
    assert torch.dist(mid, (c1 + c2) / 2) < 0.5
    assert torch.dist(picked, c2) < 0.25 * torch.dist(picked, c1)
    # the features mode leaves the features unchanged in response mode and vice versa
    f = torch.rand(1, 4, 8, 8)
    assert torch.equal(att(f, moved), f)
    assert torch.equal(SpikeAttention(2, mode="features").response(r, moved), r)


def test_feature_gating_is_cancelled_by_normalized_correlation():
    """Why attention acts on the response: NCC is invariant to a gain on the features, so the
    feature-gating form F ⊙ (1 + γA) does nothing where A is constant over the k×k patch."""
    g = torch.Generator().manual_seed(0)
    f = torch.rand(2, 6, 10, 10, generator=g)
    z = torch.rand(2, 6, 3, 3, generator=g)
    r = normalized_correlate(f, z)
    r_gain = normalized_correlate(3.7 * f, z)
    torch.testing.assert_close(r_gain[:, 1:-1, 1:-1], r[:, 1:-1, 1:-1], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("n_windows,n_items", [(3416, 800), (100, 800), (7, 7)])
def test_epoch_order_samples_every_window_evenly(n_windows, n_items):
    """An epoch's window indices are whole shuffled passes over the dataset, cut at n_items: no
    window is drawn twice before every window has been drawn once (an epoch shorter than the
    dataset must not keep to its first windows), and a fixed Generator gives the same order."""
    from hybrid.train import epoch_order

    order = epoch_order(np.random.default_rng((0, 3)), n_windows, n_items)
    assert order.shape == (n_items,) and order.min() >= 0 and order.max() < n_windows
    counts = np.bincount(order, minlength=n_windows)
    assert counts.max() - counts.min() <= 1
    if n_items < n_windows:  # a uniform sample: windows past the first n_items are drawn too
        assert (order >= n_items).mean() == pytest.approx(1 - n_items / n_windows, abs=0.06)
    np.testing.assert_array_equal(order, epoch_order(np.random.default_rng((0, 3)), n_windows, n_items))


@pytest.mark.parametrize("channels, field", [((4, 8, 8), 9), ((4, 8, 8, 8, 8), 25)])
def test_deeper_ann_widens_the_receptive_field_and_exports(channels, field):
    """Layers past the third stay at stride 4 and add 8 px of receptive field each (closed form:
    9 + 8·(L − 3) px): the input gradient of one output cell is non-zero on exactly that square.
    The integer export has one conv layer per width and the same output grid."""
    from hybrid.export import ann_integer

    torch.manual_seed(0)
    m = DashNet(ModelConfig(variant="ann_only", search_size=64, ann_channels=channels))
    x = torch.zeros(1, 1, 64, 64, requires_grad=True)
    with torch.no_grad():
        for layer in m.ann:
            if isinstance(layer, torch.nn.Conv2d):
                layer.weight.uniform_(0.1, 1.0)  # positive weights: every path adds, nothing cancels
                layer.bias.fill_(10.0)  # every ReLU open (the input is −0.5 after normalisation)
    m.ann_features(x)[0, :, 8, 8].sum().backward()
    rows, cols = np.nonzero(x.grad[0, 0].numpy())
    assert rows.max() - rows.min() + 1 == field and cols.max() - cols.min() + 1 == field
    net, _ = ann_integer(m, torch.rand(4, 1, 64, 64))
    assert [layer.kind for layer in net.layers] == ["conv2d"] * len(channels)
    assert net.layers[-1].weight.shape[0] == channels[-1]


def test_ann_and_snn_widths_are_checked():
    from neurosim.errors import ParameterError

    for bad in ({"ann_channels": (8, 16)}, {"snn_channels": (8, 16, 16, 16)}, {"ann_channels": (8, 0, 16)}):
        with pytest.raises(ParameterError, match="channels"):
            ModelConfig(**bad).check()
