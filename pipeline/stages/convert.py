"""Stage `convert`: the validated manifests -> FFCV .beton files (data/beton/), one per split.

    classification_train.beton  classification_val.beton     image, label
    sysu_train.beton  sysu_query.beton  sysu_gallery.beton    image, label, camera, is_distractor

Each file has a `<name>.beton.json` sidecar (manifest hash, convert parameters, size) that the loaders
check. The output is byte-identical for the same manifests and parameters (see pipeline/ffcv_io/writer.py),
so DVC's hash of data/beton is stable. Everything is written into data/beton.partial/ and renamed when
complete; a failure leaves no data/beton behind.
"""
from __future__ import annotations

import shutil
import time

from ..data.generate_common import AtomicDir
from ..ffcv_io.datasets import BETON_DIR, MANIFESTS, convert_all
from ..ffcv_io.sidecar import BetonError
from ._common import StageFailed, log, run_stage


def main() -> None:
    def body(params):
        if not MANIFESTS.is_dir():
            raise StageFailed(f"{MANIFESTS}: not found; run `dvc repro validate` first")
        shutil.rmtree(BETON_DIR, ignore_errors=True)  # our own earlier output: never left looking current
        t0 = time.perf_counter()
        try:
            with AtomicDir(BETON_DIR) as tmp:
                written = convert_all(params, tmp)
                if not written:
                    raise StageFailed(f"{MANIFESTS}: no classification.csv or sysu.csv rows to convert")
        except (BetonError, ValueError) as e:
            raise StageFailed(str(e)) from None
        n = sum(s.samples for s in written)
        seconds = time.perf_counter() - t0
        log.info("wrote %d .beton files (%d images) to %s in %.1f s: %.0f images/s", len(written), n, BETON_DIR,
                 seconds, n / max(seconds, 1e-9))

    run_stage("convert", body)


if __name__ == "__main__":
    main()
