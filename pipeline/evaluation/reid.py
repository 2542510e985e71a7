"""SYSU-30k / Market-1501 retrieval metrics (docs/method.md section 4), streamed over the gallery.

    metrics = evaluate(q_feats, q_ids, q_cams, g_feats, g_ids, g_cams)
    metrics["rank1"], metrics["mAP"]

Protocol. Features are L2-normalised, the score is the dot product (cosine). For a query, a gallery item is
  good   same identity, different camera;
  junk   same identity and same camera, or identity -1: removed from the ranking (it neither helps nor hurts);
  wrong  anything else, including SYSU-30k's `0000others` distractors, which carry DISTRACTOR_ID (-1000, the
         label pipeline.data.readers_sysu gives them): no query may have that identity, so they never match.
The gallery is ranked by descending score (ties: lower gallery index first, as a stable sort would).
CMC rank-n = share of queries with a good item among the first n of the junk-free ranking; AP is
Market-1501's trapezoid form: sum over the good items, in rank order, of (1/n_good) * (precision before it +
precision at it) / 2. Queries without any good item are skipped and counted (`queries_without_match`).

Memory. The real SYSU-30k test set is 1,000 queries x 479,730 gallery images (2048-d float32: 3.9 GB). No
query x gallery matrix and no sort of it is ever built: queries are scored in blocks of rows (at most
`block_bytes` of scores), the gallery is read `chunk` rows at a time and never copied or normalised as a
whole (its row norms are computed once, chunk-wise), and a good item's rank is the number of non-junk
items that score above it in its own row (a count, not a sort).
"""
from __future__ import annotations

import math

import numpy as np
import torch

DISTRACTOR_ID = -1000  # SYSU-30k `0000others` (pipeline.data.readers_sysu.DISTRACTOR_LABEL)
JUNK_ID = -1           # Market-1501's junk label: always removed from the ranking
CMC_RANKS = (1, 5, 10)


def _as_tensor(x, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, np.ndarray):
        return torch.from_numpy(x)  # no copy: the gallery may be most of the machine's memory
    try:
        return torch.as_tensor(x)
    except (TypeError, ValueError, RuntimeError) as e:
        raise ValueError(f"{name}: expected an array or tensor ({e})") from None


def _labels(x, name: str, n: int, n_name: str) -> torch.Tensor:
    t = _as_tensor(x, name)
    if t.ndim != 1:
        raise ValueError(f"{name}: expected a 1-d array, got shape {tuple(t.shape)}")
    if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        raise ValueError(f"{name}: expected integers, got dtype {t.dtype}")
    if len(t) != n:
        raise ValueError(f"{name}: {len(t)} entries, expected one per row of {n_name} ({n})")
    return t.to(torch.int64).cpu()


def _feats(x, name: str) -> torch.Tensor:
    t = _as_tensor(x, name)
    if t.ndim != 2:
        raise ValueError(f"{name}: expected a 2-d [N, D] array, got shape {tuple(t.shape)}")
    if not t.dtype.is_floating_point:
        raise ValueError(f"{name}: expected floating-point features, got dtype {t.dtype}")
    return t


def _compute_dtype(*feats: torch.Tensor) -> torch.dtype:
    return torch.float64 if any(f.dtype == torch.float64 for f in feats) else torch.float32


@torch.no_grad()
def _gallery_inverse_norms(gallery: torch.Tensor, chunk: int, device, dtype) -> torch.Tensor:
    """1 / max(||g||, eps) per gallery row (F.normalize's eps), chunk by chunk; rejects non-finite rows."""
    out = torch.empty(len(gallery), dtype=dtype, device=device)
    for s in range(0, len(gallery), chunk):
        norms = torch.linalg.vector_norm(gallery[s:s + chunk].to(device=device, dtype=dtype), dim=1)
        if not torch.isfinite(norms).all():
            bad = s + int((~torch.isfinite(norms)).nonzero()[0])
            raise ValueError(f"gallery_feats: row {bad} is not finite (NaN or infinity)")
        out[s:s + chunk] = 1.0 / norms.clamp_min(1e-12)
    return out


def _average_precision(ranks: torch.Tensor) -> float:
    """Market-1501 trapezoid AP from the 0-based junk-free ranks of a query's good items."""
    ranks = torch.sort(ranks).values.to(torch.float64)
    n = len(ranks)
    hits = torch.arange(1, n + 1, dtype=torch.float64)
    precision = hits / (ranks + 1)
    before = torch.where(ranks > 0, (hits - 1) / ranks.clamp_min(1), torch.ones_like(ranks))
    return float(((before + precision) / 2).sum() / n)


@torch.no_grad()
def evaluate(query_feats, query_ids, query_cams, gallery_feats, gallery_ids, gallery_cams, *,
             chunk: int = 65536, block_bytes: int = 256 * 2**20, per_query: bool = False) -> dict:
    """Rank-1/5/10 and mAP (fractions in [0, 1]) of query-to-gallery retrieval under the SYSU-30k protocol.

    query_feats [Q, D], gallery_feats [G, D]: float arrays or tensors (numpy arrays are used without a
    copy; float64 input is scored in float64, anything else in float32; the work runs on query_feats'
    device, the gallery is moved there chunk by chunk). *_ids, *_cams: integer [Q] / [G]. Gallery ids:
    -1 = junk, DISTRACTOR_ID (-1000) = distractor; query ids must be >= 0.
    chunk: gallery rows per matrix product; block_bytes: bound on one block of query x gallery scores.
    Returns {rank1, rank5, rank10, mAP, queries, queries_evaluated, queries_without_match, gallery}; with
    per_query, also "per_query": {rank1, rank5, rank10 (0 / 1 hits), AP} for each evaluated query in order
    (what compares two backbones query by query).
    """
    q = _feats(query_feats, "query_feats")
    g = _feats(gallery_feats, "gallery_feats")
    if len(q) == 0:
        raise ValueError("query_feats: the query set is empty (0 rows); nothing to evaluate")
    if len(g) == 0:
        raise ValueError("gallery_feats: the gallery is empty (0 rows); nothing to rank")
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"feature dimensions differ: query_feats has {q.shape[1]}, gallery_feats {g.shape[1]}")
    if chunk < 1 or block_bytes < 1:
        raise ValueError(f"chunk = {chunk}, block_bytes = {block_bytes}: both must be >= 1")
    q_ids = _labels(query_ids, "query_ids", len(q), "query_feats")
    q_cams = _labels(query_cams, "query_cams", len(q), "query_feats")
    g_ids = _labels(gallery_ids, "gallery_ids", len(g), "gallery_feats")
    g_cams = _labels(gallery_cams, "gallery_cams", len(g), "gallery_feats")
    if (q_ids < 0).any():
        bad = int(q_ids[q_ids < 0][0])
        raise ValueError(f"query_ids: identity {bad} in the query set; negative ids mark gallery junk "
                         f"({JUNK_ID}) and distractors ({DISTRACTOR_ID}) and cannot be queries")

    device, dtype = q.device, _compute_dtype(q, g)
    qn = q.to(dtype)
    qn = qn / torch.linalg.vector_norm(qn, dim=1, keepdim=True).clamp_min(1e-12)
    if not torch.isfinite(qn).all():
        raise ValueError("query_feats: contains NaN or infinity")
    inv_norm = _gallery_inverse_norms(g, chunk, device, dtype)
    n_gallery = len(g)
    junk_columns = (g_ids == JUNK_ID).nonzero().view(-1).to(device)
    # The gallery items of query i's identity are order[lo[i]:hi[i]] (found without comparing all pairs).
    sorted_ids, order = torch.sort(g_ids, stable=True)
    lo = torch.searchsorted(sorted_ids, q_ids, side="left")
    hi = torch.searchsorted(sorted_ids, q_ids, side="right")

    bytes_per_row = n_gallery * torch.empty((), dtype=dtype).element_size()
    rows_per_block = max(1, min(len(q), block_bytes // bytes_per_row))
    block = torch.empty(rows_per_block, n_gallery, dtype=dtype, device=device)
    columns = torch.arange(n_gallery, device=device)
    hits = torch.zeros(len(CMC_RANKS), dtype=torch.int64)
    ap_sum, evaluated, without_match = 0.0, 0, 0
    items = {**{f"rank{n}": [] for n in CMC_RANKS}, "AP": []}
    for b0 in range(0, len(q), rows_per_block):
        b1 = min(len(q), b0 + rows_per_block)
        scores = block[: b1 - b0]
        for s in range(0, n_gallery, chunk):
            g_chunk = g[s:s + chunk].to(device=device, dtype=dtype, non_blocking=True)
            scores[:, s:s + chunk] = qn[b0:b1] @ g_chunk.T
            scores[:, s:s + chunk] *= inv_norm[s:s + chunk]
        scores[:, junk_columns] = -math.inf  # identity -1: junk for every query
        for r in range(b1 - b0):
            qi = b0 + r
            same = order[lo[qi]:hi[qi]]  # gallery items of this query's identity
            same_cam = g_cams[same] == q_cams[qi]
            good = same[~same_cam].to(device)
            if len(good) == 0:
                without_match += 1
                continue
            row = scores[r]
            junk = same[same_cam].to(device)
            row[junk] = -math.inf  # same identity, same camera: removed from this query's ranking
            m = row[good]
            # 0-based rank of each good item among the non-junk items: those scoring higher, plus equal
            # scores earlier in the gallery (a stable sort's order). -inf (junk) is never above a finite score.
            ahead = (row[None, :] > m[:, None]).sum(1) + \
                ((row[None, :] == m[:, None]) & (columns[None, :] < good[:, None])).sum(1)
            ranks = ahead.cpu()
            best = int(ranks.min())
            hit = torch.tensor([best < n for n in CMC_RANKS])
            hits += hit
            ap = _average_precision(ranks)
            ap_sum += ap
            evaluated += 1
            if per_query:
                for n, h in zip(CMC_RANKS, hit.tolist()):
                    items[f"rank{n}"].append(float(h))
                items["AP"].append(ap)
    if evaluated == 0:
        raise ValueError(f"none of the {len(q)} queries has a good match in the gallery (same identity, "
                         "another camera); check the identities and cameras")
    result = {**{f"rank{n}": hits[i].item() / evaluated for i, n in enumerate(CMC_RANKS)},
              "mAP": ap_sum / evaluated, "queries": len(q), "queries_evaluated": evaluated,
              "queries_without_match": without_match, "gallery": n_gallery}
    return {**result, "per_query": items} if per_query else result


@torch.no_grad()
def top_k(query_feats, query_ids, query_cams, gallery_feats, gallery_ids, gallery_cams, k: int = 5,
          *, chunk: int = 65536) -> tuple[torch.Tensor, torch.Tensor]:
    """The first k gallery indices of each query's junk-free ranking and whether each is good.

    Returns (indices [Q, k] int64, good [Q, k] bool); index -1 where fewer than k items remain. For
    pictures of a few queries: the scores are kept only for the current top k per query.
    """
    q = _feats(query_feats, "query_feats")
    g = _feats(gallery_feats, "gallery_feats")
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"feature dimensions differ: query_feats has {q.shape[1]}, gallery_feats {g.shape[1]}")
    q_ids = _labels(query_ids, "query_ids", len(q), "query_feats")
    q_cams = _labels(query_cams, "query_cams", len(q), "query_feats")
    g_ids = _labels(gallery_ids, "gallery_ids", len(g), "gallery_feats")
    g_cams = _labels(gallery_cams, "gallery_cams", len(g), "gallery_feats")
    dtype = _compute_dtype(q, g)
    qn = torch.nn.functional.normalize(q.to(dtype), dim=1).cpu()
    best_s = torch.full((len(q), k), -math.inf, dtype=dtype)
    best_i = torch.full((len(q), k), -1, dtype=torch.int64)
    for s in range(0, len(g), chunk):
        gc = torch.nn.functional.normalize(g[s:s + chunk].to(dtype).cpu(), dim=1)
        sc = qn @ gc.T
        ids, cams = g_ids[s:s + chunk], g_cams[s:s + chunk]
        junk = (ids[None, :] == JUNK_ID) | ((ids[None, :] == q_ids[:, None]) & (cams[None, :] == q_cams[:, None]))
        sc[junk] = -math.inf
        idx = torch.arange(s, s + len(gc)).expand(len(q), -1)
        # Earlier candidates first in the concatenation: a stable sort keeps the lower index on ties.
        all_s, all_i = torch.cat([best_s, sc], 1), torch.cat([best_i, idx], 1)
        keep = torch.sort(all_s, dim=1, descending=True, stable=True).indices[:, :k]
        best_s, best_i = all_s.gather(1, keep), all_i.gather(1, keep)
    best_i[torch.isinf(best_s)] = -1
    valid = best_i >= 0
    safe = best_i.clamp_min(0)
    good = valid & (g_ids[safe] == q_ids[:, None]) & (g_cams[safe] != q_cams[:, None])
    return best_i, good
