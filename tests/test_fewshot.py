"""NP-RepMet head (neurosim.fewshot) against hand-worked values; the few-shot benchmark's AP and
the tracker's representative boxes against closed forms."""

import math

import numpy as np
import pytest
import torch

from neurosim.errors import ParameterError
from neurosim.fewshot import functional as F
from neurosim.fewshot.module import NPRepMetHead, pad_reps

S3 = math.sqrt(3.0)


def t(*rows):
    return torch.tensor(rows, dtype=torch.float32)


# e = (1, 0); R^p = (1, 0), (0, 1); R^n = (0, 1), (−1, 0):
# d(e, R^p) = [0, 2], d(e, R^n) = [2, 4]; D = d^p − 0.2·d^n + 0.4 = [0, 1.6]; p = exp(−D/0.5) = [1, e^−3.2]
E = t([1.0, 0.0])
RP = t([1.0, 0.0], [0.0, 1.0])
RN = t([0.0, 1.0], [-1.0, 0.0])


def test_distances_scores_and_logits_by_hand():
    d = F.rep_distances(E, RP[None], None, RN[None], beta=0.2, margin=0.4)
    torch.testing.assert_close(d, torch.tensor([[[0.0, 1.6]]]), atol=1e-6, rtol=0)
    P, logit = F.score(E, RP[None], None, RN[None])
    assert P.item() == pytest.approx(1.0)
    torch.testing.assert_close(logit, t([15 * 0.5, 15 * 1.0]))  # background 1 − ½·1


def test_repmet_is_beta_zero_and_without_negatives():
    # D = d + 0.4 = [0.4, 2.4] → P = exp(−0.8)
    p_rep = math.exp(-0.8)
    for reps_neg, params in ((None, F.NPRepMetParams()), (RN[None], F.NPRepMetParams(beta=0.0))):
        P, logit = F.score(E, RP[None], None, reps_neg, params)
        assert P.item() == pytest.approx(p_rep, rel=1e-6)
        torch.testing.assert_close(logit, t([15 * (1 - 0.5 * p_rep), 15 * p_rep]))


def test_negative_representatives_lower_a_proposal_that_looks_like_them():
    # e2 = (0, 1) lies on R^n_1: D_1 = d(e2,(1,0)) − 0.2·0 + 0.4 = 2.4, D_2 = 0 − 0.2·2 + 0.4 = 0 → P = 1;
    # with R^n = ((0,1), (0,1)): D_2 = 0 − 0 + 0.4 → P = exp(−0.8)
    e2 = t([0.0, 1.0])
    assert F.score(e2, RP[None], None, RN[None])[0].item() == pytest.approx(1.0)
    near = t([0.0, 1.0], [0.0, 1.0])
    assert F.score(e2, RP[None], None, near[None])[0].item() == pytest.approx(math.exp(-0.8), rel=1e-6)


def test_int8_embedding_scores_like_its_float_value():
    q = torch.tensor([[100, 0], [3, -4]], dtype=torch.int8)
    f = t([1.0, 0.0], [0.6, -0.8])
    a, b = F.score(q, RP[None], None, RN[None]), F.score(f, RP[None], None, RN[None])
    torch.testing.assert_close(a[1], b[1])


def test_cross_entropy_and_embedding_losses_by_hand():
    # CE of logits [7.5, 15] for class 1 = log(1 + e^−7.5)
    assert F.classification_loss(t([7.5, 15.0]), torch.tensor([1])).item() == pytest.approx(math.log1p(math.exp(-7.5)), rel=1e-4)
    # two classes, K = 1: R_1 = (1, 0), R_2 = (0, 1); e = (½, √3/2): d(e, R_1) = 1, d(e, R_2) = 2 − √3
    reps = t([[1.0, 0.0]], [[0.0, 1.0]])
    e = t([0.5, S3 / 2], [0.5, S3 / 2])
    labels = torch.tensor([1, 2])
    # label 1: 1 − (2 − √3) + 0.5 = √3 − 0.5; label 2: (2 − √3) − 1 + 0.5 < 0 → 0
    assert F.embedding_loss_pos(e, reps, labels, 0.5).item() == pytest.approx((S3 - 0.5) / 2, rel=1e-5)
    # no margin: label 1: √3 − 1; label 2: 0
    assert F.embedding_loss_neg(e, reps, labels).item() == pytest.approx((S3 - 1) / 2, rel=1e-5)
    assert F.embedding_loss_pos(e, reps, torch.tensor([0, 0])).item() == 0.0  # background rows are skipped


def test_head_loss_is_the_sum_of_its_terms_and_set_support_replaces_representatives():
    head = NPRepMetHead(2, 2, F.NPRepMetParams(k=1))
    head.set_support(t([[1.0, 0.0]], [[0.0, 1.0]]), t([[0.0, -1.0]], [[-1.0, 0.0]]))
    e = t([0.5, S3 / 2])
    labels, neg = torch.tensor([1]), torch.tensor([2])
    _, logit = head(e)
    want = (F.classification_loss(logit, labels) + F.embedding_loss_pos(e, head.reps_pos, labels, 0.5)
            + F.embedding_loss_neg(e, head.reps_neg, neg))
    assert head.loss(e, labels, None, neg).item() == pytest.approx(want.item())
    # class 2 by hand: D = (2 − √3) − 0.2·d(e, (−1, 0)) + 0.4, d = 2 + 2·½ = 3
    d2 = (2 - S3) - 0.2 * 3 + 0.4
    assert head(e)[0][0, 1].item() == pytest.approx(math.exp(-2 * d2), rel=1e-5)
    head.loss(e, labels, None, neg).backward()  # differentiable end to end
    assert head.reps_pos.grad is not None


def test_update_moves_only_the_nearest_representative():
    # e = (0.6, 0.8) is nearest (0, 1): R ← normalize(½(0, 1) + ½(0.6, 0.8)) = (0.3, 0.9)/√0.9
    out = F.update_representatives(t([1.0, 0.0], [0.0, 1.0]), t([0.6, 0.8]), 0.5)
    torch.testing.assert_close(out, t([1.0, 0.0], [0.3 / math.sqrt(0.9), 0.9 / math.sqrt(0.9)]))


def test_kmeans_by_hand():
    # mean direction (0.8, 0.6) → first centre B = (0.8, 0.6); farthest from it: (−1, 0);
    # clusters {(1,0), B, (0.8,−0.6)} → (1, 0) and {(−1,0), (−0.8,0.6)} → (−1.8, 0.6)/√3.6
    e = t([1.0, 0.0], [0.8, 0.6], [0.8, -0.6], [-1.0, 0.0], [-0.8, 0.6])
    torch.testing.assert_close(F.kmeans(e, 2), t([1.0, 0.0], [-1.8 / math.sqrt(3.6), 0.6 / math.sqrt(3.6)]))
    assert F.kmeans(e[:1], 5).shape == (1, 2)  # fewer embeddings than K


def test_box_iou_and_nms_by_hand():
    a, b, c = [0, 0, 2, 2], [1, 0, 2, 2], [0.2, 0, 2, 2]
    assert F.box_iou(np.array(a), np.array(b))[0, 0] == pytest.approx(2 / 6)
    # c–a: 3.6/4.4 > 0.5 (a dropped); c–b: 2.4/5.6 ≤ 0.5 (b kept)
    assert F.nms(np.array([a, b, c], float), np.array([0.9, 0.8, 0.95]), 0.5).tolist() == [2, 1]


def test_support_representatives_pick_positives_and_nms_negatives():
    p = F.NPRepMetParams(k=1)
    e = t([1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [0.0, -1.0], [-1.0, 0.0])
    boxes = np.array([[0, 0, 2, 2], [0.1, 0, 2, 2], [10, 0, 2, 2], [10.1, 0, 2, 2], [30, 0, 2, 2]], float)
    iou = np.array([0.9, 0.75, 0.3, 0.25, 0.05])
    # positives rows 0, 1 → normalize((1.6, 0.8)); negatives rows 2, 3 overlap → NMS keeps row 2 (higher IoU)
    pos, neg = F.support_representatives(e, e, boxes, iou, p)
    torch.testing.assert_close(pos, t([1.6 / math.sqrt(3.2), 0.8 / math.sqrt(3.2)]))
    torch.testing.assert_close(neg, t([0.0, 1.0]))
    # in different images NMS does not suppress across them: both negatives → normalize((0, 0)) is the
    # mean of opposite vectors; with K = 2 both are kept
    _, neg2 = F.support_representatives(e, e, boxes, iou, F.NPRepMetParams(k=2), np.array([0, 0, 0, 1, 1]))
    assert sorted(neg2[:, 1].tolist()) == [-1.0, 1.0]
    assert pad_reps([pos, t([0.0, 1.0], [1.0, 0.0])], 2)[0, 1].tolist() == pos[0].tolist()


@pytest.mark.parametrize("kwargs", [{"k": 0}, {"beta": -0.1}, {"sigma": 0.0}, {"neg_iou": (0.3, 0.2)},
                                    {"neg_iou": (0.2, 0.8)}, {"pos_iou": 1.5}])
def test_parameters_out_of_range(kwargs):
    with pytest.raises(ParameterError, match="fewshot"):
        F.NPRepMetParams(**kwargs).check()


def test_same_seed_same_head():
    a, b = NPRepMetHead(3, 8, seed=4), NPRepMetHead(3, 8, seed=4)
    assert torch.equal(a.reps_pos, b.reps_pos) and torch.equal(a.reps_neg, b.reps_neg)


def test_average_precision_by_hand():
    from hybrid.fewshot_bench import average_precision

    # ranked hits T F T, 2 objects: precision 1 at recall ½, 2/3 at recall 1 → AP = ½·1 + ½·⅔
    ap = average_precision(np.array([0.9, 0.8, 0.7]), np.array([True, False, True]), 2)
    assert ap == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert average_precision(np.array([0.9]), np.array([True]), 2) == pytest.approx(0.5)


def test_tracker_boxes_have_the_stated_overlaps():
    from hybrid.target_reps import positive_boxes, ring_boxes

    box = np.array([10.0, 20.0, 40.0, 30.0])
    np.testing.assert_allclose(F.box_iou(ring_boxes(box), box[None])[:, 0], 0.25, atol=1e-12)
    assert (F.box_iou(positive_boxes(box), box[None])[:, 0] >= 0.7).all()


def test_bench_episode_same_seed_same_map(shared_data):
    from hybrid.fewshot_bench import BenchParams, load_sequences, run_episode

    p = BenchParams(ways=2, shots=(1, 2), queries=1, jitter=16, windows=20, bootstrap=0).check()
    seqs = load_sequences(shared_data, "val")[:2]
    a, b = run_episode(seqs, 0, p), run_episode(seqs, 0, p)
    assert a == b and all(0.0 <= v <= 1.0 for v in a["repmet"] + a["np"])


def test_representative_tracker_is_deterministic_and_stays_on_crossing(shared_data):
    from hybrid.fewshot_bench import load_sequences
    from hybrid.target_reps import RepDCFTracker

    seq = next(s for s in load_sequences(shared_data, "all") if s.name == "Crossing")
    runs = []
    for _ in range(2):
        tracker = RepDCFTracker()
        tracker.init(seq.frame(0), seq.boxes[0])
        runs.append(np.stack([tracker.update(seq.frame(i)) for i in range(1, 8)]))
    np.testing.assert_array_equal(runs[0], runs[1])
    assert (F.box_iou(runs[0][-1], seq.boxes[7])[0, 0]) > 0.5  # the pedestrian is followed
    assert tracker.reps_pos.shape == (5, 576) and tracker.reps_neg.shape == (5, 576)


@pytest.mark.parametrize("kwargs, needle", [({"target_reps": "n"}, "target_reps"), ({"target_min_ratio": 0.0}, "target_min_ratio"),
                                            ({"target_min_ratio": 1.5}, "target_min_ratio")])
def test_target_reps_settings_are_checked(kwargs, needle):
    from hybrid.model import ModelConfig

    with pytest.raises(ParameterError, match=needle):
        ModelConfig(**kwargs).check()


@pytest.mark.parametrize("setting, needle", [("beta=-1", "fewshot.beta"), ("shots=[0]", "shots"), ("split=test", "split"),
                                             ("k=0", "fewshot.k")])
def test_bench_bad_settings_one_line_exit_2(setting, needle, capsys):
    from neurosim.cli import main

    assert main(["fewshot", "bench", "--data", "/nonexistent", "--set", setting]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err


def test_learned_heads_same_seed_same_bits_and_loss_falls():
    from hybrid.fewshot_bench import BenchParams, train_heads

    g = torch.Generator().manual_seed(0)
    centres = F.normalize(torch.randn(3, 32, generator=g))
    y = torch.arange(60) % 4  # 0 = background, 1..3 classes
    hard = torch.where(y == 0, torch.arange(60) % 3 + 1, torch.zeros_like(y))
    x = torch.where((y > 0)[:, None], centres[(y - 1).clamp_min(0)], centres[hard - 1] * 0.5) + 0.3 * torch.randn(60, 32, generator=g)
    p = BenchParams(dim=8, train_steps=15, k=2).check()
    (ep, en), losses = train_heads((x, y, hard), 3, p, "np")
    (ep2, en2), _ = train_heads((x, y, hard), 3, p, "np")
    assert torch.equal(ep(x), ep2(x)) and torch.equal(en(x), en2(x))
    assert ep(x).shape == (60, 8) and losses[-1] < losses[0]
