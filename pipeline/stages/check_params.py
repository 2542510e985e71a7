"""Stage `check_params`: validate the whole params.yaml before anything else runs.

It depends on every parameter, so `dvc exp run -S loss.k=0` stops here, naming `loss.k`, while the
data stages (which depend only on their own sections) stay cached.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..io_safety import write_text_atomic
from ..train.device import check_device
from ._common import log, run_stage

OUT = Path("data/params.json")


def main() -> None:
    def body(params):
        check_device(params.train.device)  # the schema cannot know this machine; pretrain checks it again
        OUT.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(OUT, json.dumps(params.model_dump(by_alias=True), indent=2, sort_keys=True) + "\n")
        log.info("params.yaml is valid (method %s, loss %s)", params.method, params.loss.describe())

    run_stage("check_params", body)


if __name__ == "__main__":
    main()
