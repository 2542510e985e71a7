"""The pretraining step on a GPU: the paper profile and the embedded default, on synthetic in-memory batches.

    python -m pipeline.bench gpu [--profiles paper,default] [--steps 20] [--warmup 5] [--peak-size 8192]
                                 [--batch-size N] [--image-size N] [--device cuda|cpu]

For each profile, the pretrain stage's own step (`Pretrainer._step`: two-view online forward + backward, EMA
target forward, loss, optimizer and EMA update) with that profile's model, loss and train settings, fed
two views of random normalised images already on the device (no loader, no augmentation: the step alone):
  paper    params.yaml with conf/model/resnet50.yaml and conf/train/paper.yaml: ResNet-50, 224 px, 256 per GPU, LARS, bf16
           autocast, channels_last (accumulation as configured)
  default  params.yaml's configuration (the embedded default)
JSON figures per profile P: P_img_s, P_gflop_per_image (FlopCounterMode over one step: matmuls and
convolutions, forward and backward), P_gflop_s, and P_efficiency against the matching peak: the bf16
torch.mm peak (peak_bf16_gflop_s) for a bf16/fp16 profile, the fp32 one (peak_fp32_gflop_s, TF32 off) else.
Written for the GPU machine (`scripts/gpu_check.sh` runs it with a timeout); on the CPU it runs at small
--batch-size / --image-size as a check of the code, not as a measurement. Last line: one JSON object.
"""
from __future__ import annotations

import argparse
import os
import time

import torch

from ..config import CONF_DIR, load_params, read_yaml, validate_params
from ..train.loop import pick_device
from .machine import cpu_model, figures, matmul_peak, pretrain_step, with_overrides

# Config groups swapped into params.yaml per profile: what `model=resnet50 train=paper` selects in conf/
# (read as YAML, without Hydra, which the GPU machine's image lacks).
PROFILES = {"paper": {"model": "resnet50", "train": "paper"}, "default": {}}


class SyntheticTwoViews:
    """(view1, view2, labels) batches of random normalised images, made once on the device and cycled.

    Sized like a loader (`len` is the number of distinct batches) so that the trainer can set its schedule.
    """

    def __init__(self, batch_size: int, image_size: int, device: torch.device, distinct: int = 2, seed: int = 0):
        gen = torch.Generator().manual_seed(seed)
        shape = (batch_size, 3, image_size, image_size)
        self.batches = [(torch.randn(shape, generator=gen).to(device), torch.randn(shape, generator=gen).to(device),
                         torch.randint(0, 10, (batch_size,), generator=gen).to(device)) for _ in range(distinct)]

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        return iter(self.batches)


def profile_params(name: str, device: torch.device, batch_size: int | None, image_size: int | None):
    """The profile's validated params on `device`, with the size overrides (for a CPU check)."""
    raw = load_params().model_dump(by_alias=True)
    for group, option in PROFILES[name].items():
        raw[group] = read_yaml(CONF_DIR / group / f"{option}.yaml")
    params = validate_params(raw, f"params.yaml with {PROFILES[name] or 'no'} config groups swapped in")
    overrides = {"train.device": device.type}
    if batch_size:
        overrides["train.batch_size"] = batch_size
    if image_size:
        overrides["train.image_size"] = image_size
    return with_overrides(params, overrides, f"the {name} profile with its size overrides")


def measure_profile(name: str, device: torch.device, steps: int, warmup: int, peaks: dict,
                    batch_size: int | None = None, image_size: int | None = None) -> dict:
    params = profile_params(name, device, batch_size, image_size)
    t = params.train
    batches = SyntheticTwoViews(t.batch_size, t.image_size, device)
    measured = pretrain_step(params, batches, device, steps=steps, warmup=warmup)
    peak = peaks["bf16"] if t.precision in ("bf16", "fp16") else peaks["fp32"]
    return {f"{name}_arch": params.model.arch, f"{name}_batch_size": t.batch_size, f"{name}_image_size": t.image_size,
            f"{name}_precision": t.precision, f"{name}_channels_last": t.channels_last,
            **figures(name, measured["flops"], measured["flop_images"], measured["img_s"], peak)}


def main(argv: list[str]) -> dict:
    ap = argparse.ArgumentParser(prog="python -m pipeline.bench gpu")
    ap.add_argument("--profiles", default="paper,default", help=f"comma list of {', '.join(PROFILES)}")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--peak-size", type=int, default=8192, help="n of the n x n torch.mm of the peaks")
    ap.add_argument("--batch-size", type=int, help="per-device batch of every profile (a CPU check)")
    ap.add_argument("--image-size", type=int, help="view side of every profile (a CPU check)")
    ap.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.profiles.split(",") if n.strip()]
    unknown = [n for n in names if n not in PROFILES]
    if unknown or not names:
        ap.error(f"--profiles {args.profiles!r}: expected a comma list of {', '.join(PROFILES)}")
    if min(args.steps, args.peak_size) < 1 or args.warmup < 0:
        ap.error("--steps and --peak-size must be >= 1, --warmup >= 0")
    device = pick_device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # the fp32 peak is plain fp32
        torch.backends.cudnn.benchmark = True
    else:
        torch.set_num_threads(os.cpu_count() or 1)
    peaks = {"fp32": matmul_peak(args.peak_size, device), "bf16": matmul_peak(args.peak_size, device, dtype=torch.bfloat16)}
    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model(),
              "torch": torch.__version__, "peak_fp32_gflop_s": round(peaks["fp32"], 1),
              "peak_bf16_gflop_s": round(peaks["bf16"], 1)}
    for name in names:
        start = time.perf_counter()
        result.update(measure_profile(name, device, args.steps, args.warmup, peaks, args.batch_size, args.image_size))
        result[f"{name}_seconds"] = round(time.perf_counter() - start, 1)
        if device.type == "cuda":
            result[f"{name}_max_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2 ** 30, 2)
            torch.cuda.reset_peak_memory_stats(device)
    return result
