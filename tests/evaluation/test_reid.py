"""SYSU-30k retrieval metrics: hand-computed cases, and agreement with a literal full-matrix implementation."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pipeline.evaluation.reid import DISTRACTOR_ID, evaluate, top_k


def reference(qf, qid, qcam, gf, gid, gcam):
    """The protocol read literally: full score matrix, a stable argsort per query, Python loops."""
    qf = np.asarray(qf, dtype=np.float64)
    gf = np.asarray(gf, dtype=np.float64)
    qf = qf / np.maximum(np.linalg.norm(qf, axis=1, keepdims=True), 1e-12)
    gf = gf / np.maximum(np.linalg.norm(gf, axis=1, keepdims=True), 1e-12)
    scores = qf @ gf.T
    cmc, ap_sum, evaluated, skipped, tops = np.zeros(len(gf)), 0.0, 0, 0, []
    for i in range(len(qf)):
        good = {j for j in range(len(gf)) if gid[j] == qid[i] and gcam[j] != qcam[i]}
        junk = {j for j in range(len(gf)) if gid[j] == -1 or (gid[j] == qid[i] and gcam[j] == qcam[i])}
        ranked = [j for j in np.argsort(-scores[i], kind="stable") if j not in junk]
        tops.append(ranked[:5])
        if not good:
            skipped += 1
            continue
        positions = [pos for pos, j in enumerate(ranked) if j in good]
        cmc[positions[0]:] += 1
        ap = 0.0
        for k, pos in enumerate(positions):
            precision = (k + 1) / (pos + 1)
            before = k / pos if pos != 0 else 1.0
            ap += (before + precision) / 2 / len(good)
        ap_sum += ap
        evaluated += 1
    return {"rank1": cmc[0] / evaluated, "rank5": cmc[4] / evaluated, "rank10": cmc[9] / evaluated,
            "mAP": ap_sum / evaluated, "queries_without_match": skipped, "tops": tops}


def _angle(theta_deg: float, scale: float = 1.0) -> list[float]:
    t = math.radians(theta_deg)
    return [scale * math.cos(t), scale * math.sin(t)]


def _hand_built():
    """Query 0 (id 1, cam 2) and query 1 (id 5, cam 2) look along 0 degrees; query 2 (id 9) has no match.

    Cosine score = cos(angle). Gallery, best first:
      0  id 1 cam 2   0 deg  junk for q0 (same camera)       wrong for q1
      1  id -1        5 deg  junk for everyone
      2  id 5 cam 1  10 deg  good for q1
      3  distractor  20 deg  wrong
      4  id 1 cam 1  30 deg  good for q0
      5  id 5 cam 3  40 deg  good for q1
      6  id 2 cam 1  80 deg  wrong
      7  id 9 cam 2  85 deg  junk for q2 (same camera): q2 has no good item
    q0 junk-free ranking: 2, 3, 4, ... -> its good item at rank 3 (0-based 2): AP = (0 + 1/3) / 2 = 1/6.
    q1 junk-free ranking: 0, 2, 3, 4, 5 -> good at 0-based 1 and 4: AP = ((0 + 1/2)/2 + (1/4 + 2/5)/2) / 2
    (Market-1501: precision before the k-th good item = (k - 1) / its 0-based position).
    """
    gallery = [(1, 2, 0), (-1, 1, 5), (5, 1, 10), (DISTRACTOR_ID, 1, 20), (1, 1, 30), (5, 3, 40), (2, 1, 80),
               (9, 2, 85)]
    gf = torch.tensor([_angle(a, scale=1 + i) for i, (_, _, a) in enumerate(gallery)])  # norms differ
    gid = torch.tensor([g[0] for g in gallery])
    gcam = torch.tensor([g[1] for g in gallery])
    qf = torch.tensor([_angle(0, 3.0), _angle(0, 0.5), _angle(0)])
    return qf, torch.tensor([1, 5, 9]), torch.tensor([2, 2, 2]), gf, gid, gcam


AP_Q0 = (0 + 1 / 3) / 2
AP_Q1 = ((0 + 1 / 2) / 2 + (1 / 4 + 2 / 5) / 2) / 2


@pytest.mark.parametrize("chunk", [1, 3, 100])
def test_hand_built_case(chunk):
    m = evaluate(*_hand_built(), chunk=chunk, block_bytes=1)
    assert m["queries"] == 3 and m["queries_evaluated"] == 2 and m["queries_without_match"] == 1
    assert m["gallery"] == 8
    assert m["rank1"] == 0.0  # q0 loses to a distractor and q1's good item; q1 loses to another identity
    assert m["rank5"] == 1.0 and m["rank10"] == 1.0
    assert m["mAP"] == pytest.approx((AP_Q0 + AP_Q1) / 2)


def test_junk_is_removed_not_counted_as_wrong():
    qf, qid, qcam, gf, gid, gcam = _hand_built()
    # Only q0 and the items up to its good one: junk 0 and 1 outrank it but must not count.
    m = evaluate(qf[:1], qid[:1], qcam[:1], gf[[0, 1, 4]], gid[[0, 1, 4]], gcam[[0, 1, 4]])
    assert m["rank1"] == 1.0 and m["mAP"] == 1.0
    # The same items as ordinary wrong identities push the good item to rank 3.
    m = evaluate(qf[:1], qid[:1], qcam[:1], gf[[0, 1, 4]], torch.tensor([7, 8, 1]), gcam[[0, 1, 4]])
    assert m["rank1"] == 0.0 and m["rank5"] == 1.0 and m["mAP"] == pytest.approx(1 / 6)


def test_distractors_count_as_wrong():
    qf, qid, qcam, gf, gid, gcam = _hand_built()
    keep = [3, 4]  # a distractor above q0's only match
    m = evaluate(qf[:1], qid[:1], qcam[:1], gf[keep], gid[keep], gcam[keep])
    assert m["rank1"] == 0.0 and m["rank5"] == 1.0 and m["mAP"] == pytest.approx(0.25)


def test_ties_rank_the_lower_gallery_index_first():
    q = torch.tensor([[1.0, 0.0]])
    g = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    # Identical scores: the good item at index 2 ranks after the two wrong ones, at index 0 before them.
    assert evaluate(q, [3], [2], g, [4, 4, 3], [1, 1, 1])["rank1"] == 0.0
    assert evaluate(q, [3], [2], g, [3, 4, 4], [1, 1, 1])["rank1"] == 1.0


def _planted(rng, n_query, n_gallery, dim, exact: bool):
    """Random queries (a quarter with no gallery item at all) with good items, same-camera junk, id -1 junk, distractors, other identities.

    exact: features with four entries of +-0.5 (norm exactly 1, scores multiples of 1/4, many ties) so that
    both implementations compute every score exactly and must agree on every tie.
    """
    def feats(n):
        if not exact:
            return rng.standard_normal((n, dim))
        f = np.zeros((n, dim))
        for row in f:
            row[rng.choice(dim, 4, replace=False)] = rng.choice([-0.5, 0.5], 4)
        return f

    qid = rng.permutation(np.arange(1000, 1000 + 3 * n_query))[:n_query]
    qcam = rng.integers(1, 4, n_query)
    gid = rng.choice(np.concatenate([qid[: n_query * 3 // 4], [-1, DISTRACTOR_ID, DISTRACTOR_ID, 5, 6, 7]]), n_gallery)
    gcam = rng.integers(1, 4, n_gallery)
    qf, gf = feats(n_query), feats(n_gallery)
    for i in range(n_query):  # pull some same-identity items towards their query
        same = np.flatnonzero(gid == qid[i])
        for j in same[: rng.integers(0, len(same) + 1)]:
            gf[j] = qf[i] if exact else qf[i] + 0.8 * rng.standard_normal(dim)
    return qf, qid, qcam, gf, gid, gcam


@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize("chunk,block_bytes", [(1, 1), (7, 2048), (64, 10**9), (10**6, 5000)])
def test_agrees_with_the_literal_implementation(exact, chunk, block_bytes):
    rng = np.random.default_rng(1 + exact)
    qf, qid, qcam, gf, gid, gcam = _planted(rng, 40, 300, 16, exact)
    expected = reference(qf, qid, qcam, gf, gid, gcam)
    assert expected["queries_without_match"] > 0 and 0 < expected["rank1"] < 1  # the data exercises all cases
    dtype = np.float32 if exact else np.float64  # exact scores survive float32; Gaussian ones need float64
    got = evaluate(qf.astype(dtype), qid, qcam, gf.astype(dtype), gid, gcam, chunk=chunk, block_bytes=block_bytes)
    for key in ("rank1", "rank5", "rank10", "mAP"):
        assert got[key] == pytest.approx(expected[key], abs=1e-12), key
    assert got["queries_without_match"] == expected["queries_without_match"]
    assert got["queries_evaluated"] + got["queries_without_match"] == got["queries"] == 40


def test_top_k_is_the_head_of_the_junk_free_ranking():
    rng = np.random.default_rng(5)
    qf, qid, qcam, gf, gid, gcam = _planted(rng, 10, 120, 16, exact=True)
    expected = reference(qf, qid, qcam, gf, gid, gcam)["tops"]
    idx, good = top_k(torch.from_numpy(qf).float(), qid, qcam, torch.from_numpy(gf).float(), gid, gcam, 5, chunk=7)
    assert idx.tolist() == expected
    assert good.tolist() == [[gid[j] == qid[i] and gcam[j] != qcam[i] for j in row] for i, row in enumerate(idx)]


def test_inputs_are_validated():
    qf, qid, qcam, gf, gid, gcam = _hand_built()
    with pytest.raises(ValueError, match="query set is empty"):
        evaluate(qf[:0], qid[:0], qcam[:0], gf, gid, gcam)
    with pytest.raises(ValueError, match="gallery is empty"):
        evaluate(qf, qid, qcam, gf[:0], gid[:0], gcam[:0])
    with pytest.raises(ValueError, match="dimensions differ: query_feats has 2, gallery_feats 3"):
        evaluate(qf, qid, qcam, torch.zeros(8, 3), gid, gcam)
    with pytest.raises(ValueError, match=r"query_feats: expected a 2-d \[N, D\] array, got shape \(6,\)"):
        evaluate(qf.view(-1), qid, qcam, gf, gid, gcam)
    with pytest.raises(ValueError, match=r"gallery_cams: 7 entries, expected one per row of gallery_feats \(8\)"):
        evaluate(qf, qid, qcam, gf, gid, gcam[:7])
    with pytest.raises(ValueError, match="query_ids: expected integers"):
        evaluate(qf, qid.float(), qcam, gf, gid, gcam)
    with pytest.raises(ValueError, match="identity -1000 in the query set"):
        evaluate(qf, torch.tensor([1, DISTRACTOR_ID, 9]), qcam, gf, gid, gcam)
    bad = gf.clone()
    bad[6, 0] = math.nan
    with pytest.raises(ValueError, match="gallery_feats: row 6 is not finite"):
        evaluate(qf, qid, qcam, bad, gid, gcam, chunk=4)
    with pytest.raises(ValueError, match="none of the 1 queries has a good match"):
        evaluate(qf[2:], qid[2:], qcam[2:], gf, gid, gcam)


def test_benchmark_runs_small_and_reports_memory():
    from pipeline.bench import reid as bench

    result = bench.main(["--queries", "20", "--gallery", "300", "--dim", "16", "--chunk", "64", "--noise", "0.1"])
    assert result["bench"] == "reid" and result["gallery"] == 300 and result["within_budget"] is True
    assert 0 < result["peak_rss_gb"] < bench.MEMORY_BUDGET_GB
    assert result["rank1"] == 1.0  # tiny noise: every query finds its planted match first
