"""Benchmark: SYSU-30k retrieval evaluation at the real test-set scale, time and peak memory.

    python -m pipeline.bench reid [--queries 1000] [--gallery 479730] [--dim 2048] [--chunk 65536]
                                  [--block-mb 256] [--noise 8] [--device cpu|cuda] [--seed 0]

Random float32 features stand in for a backbone's: the gallery is generated in place, chunk by chunk
(never a float64 or temporary copy of it), gallery items 0..Q-1 are the queries' true matches (camera 1),
all others distractors; each query is its match plus Gaussian noise of `--noise` times its scale (camera 2),
so the ranks are neither trivial nor random. Reports the seconds to generate and to evaluate, the
process's peak resident memory (RSS high-water mark from getrusage, imports and data included) and
whether it stays under 8 GB. `--gallery 20000` makes a quick run.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

import torch

from pipeline.evaluation.reid import DISTRACTOR_ID, evaluate

MEMORY_BUDGET_GB = 8.0


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # ru_maxrss is in KiB on Linux


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pipeline.bench reid", description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--gallery", type=int, default=479_730, help="gallery size (SYSU-30k: 479,730)")
    parser.add_argument("--dim", type=int, default=2048, help="feature dimension (ResNet-50: 2048)")
    parser.add_argument("--chunk", type=int, default=65536, help="gallery rows per matrix product")
    parser.add_argument("--block-mb", type=float, default=256, help="bound on one block of query x gallery scores")
    parser.add_argument("--noise", type=float, default=8.0, help="query = match + noise * N(0, 1)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the gallery stays in host memory)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not 1 <= args.queries <= args.gallery:
        parser.error(f"--queries {args.queries}: expected 1 <= queries <= gallery ({args.gallery})")
    return args


def main(argv: list[str]) -> dict:
    args = _parse(argv)
    gen = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()
    gallery = torch.empty(args.gallery, args.dim, dtype=torch.float32)
    for s in range(0, args.gallery, args.chunk):
        gallery[s:s + args.chunk].normal_(generator=gen)
    gallery_ids = torch.full((args.gallery,), DISTRACTOR_ID, dtype=torch.int64)
    gallery_ids[: args.queries] = torch.arange(args.queries)
    gallery_cams = torch.ones(args.gallery, dtype=torch.int64)
    queries = gallery[: args.queries] + args.noise * torch.randn(args.queries, args.dim, generator=gen)
    query_ids, query_cams = torch.arange(args.queries), torch.full((args.queries,), 2, dtype=torch.int64)
    generate_s = time.perf_counter() - start
    rss_after_generate = _peak_rss_gb()

    start = time.perf_counter()
    metrics = evaluate(queries.to(args.device), query_ids, query_cams, gallery, gallery_ids, gallery_cams,
                       chunk=args.chunk, block_bytes=int(args.block_mb * 2**20))
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    evaluate_s = time.perf_counter() - start
    peak = _peak_rss_gb()
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"cpu ({torch.get_num_threads()} threads)"
    print(f"reid evaluate: {args.queries} queries x {args.gallery} gallery x {args.dim}-d float32 "
          f"({gallery.numel() * 4 / 1e9:.2f} GB gallery) on {device}")
    print(f"  generate {generate_s:.1f} s, evaluate {evaluate_s:.1f} s; peak RSS {peak:.2f} GB "
          f"(after generating {rss_after_generate:.2f} GB); budget {MEMORY_BUDGET_GB} GB")
    print(f"  rank-1 {metrics['rank1']:.3f}, mAP {metrics['mAP']:.3f} (noise {args.noise})")
    return {
        "bench": "reid",
        "device": device,
        "queries": args.queries,
        "gallery": args.gallery,
        "dim": args.dim,
        "chunk": args.chunk,
        "block_mb": args.block_mb,
        "gallery_gb": round(gallery.numel() * 4 / 1e9, 3),
        "generate_s": round(generate_s, 2),
        "evaluate_s": round(evaluate_s, 2),
        "peak_rss_gb": round(peak, 3),
        "peak_rss_after_generate_gb": round(rss_after_generate, 3),
        "memory_budget_gb": MEMORY_BUDGET_GB,
        "within_budget": peak < MEMORY_BUDGET_GB,
        "cpu_load_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "rank1": round(metrics["rank1"], 4),
        "mAP": round(metrics["mAP"], 4),
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
