"""The learning-efficiency study: does the truncated triplet loss learn faster, measured side by side.

    python -m pipeline.study plan                 # the experiments, their names and -S overrides
    python -m pipeline.study run [--epochs N]     # run the missing ones as DVC experiments (pretrain only)
    python -m pipeline.study report               # reports/efficiency.md + PNGs from the recorded runs

`runs` defines the experiment set (losses x seeds, plus a sweep of the truncation rank k) and runs each as
`dvc exp run --temp -n <name> -S ... pretrain`; `report` reads them back from DVC (`dvc exp show`, and the
per-epoch DVCLive curves from each experiment's commit) and writes the report.
"""
