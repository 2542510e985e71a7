"""`python -m pipeline.bench repro`: per-stage seconds from DVC's output (the clone-and-repro run itself is
the benchmark, not a test)."""
from pipeline.bench.repro import stage_seconds, table


def test_each_stage_lasts_until_the_next_one_starts():
    lines = [(0.0, "Running stage 'check_params':\n"), (0.5, "> python -m pipeline.stages.check_params\n"),
             (2.0, "Running stage 'generate':\n"), (9.0, "Updating lock file 'dvc.lock'\n"),
             (10.0, "Stage 'scan' didn't change, skipping\n"), (12.0, "Running stage 'pretrain':\n")]
    seconds = stage_seconds(lines, end=112.0)
    assert seconds == {"check_params": 2.0, "generate": 10.0, "pretrain": 100.0}
    rendered = table(seconds, 112.0)
    assert "| `pretrain` | 100 | 89 % |" in rendered and rendered.endswith("| total | 112 | 100 % |")


def test_no_stage_ran():
    assert stage_seconds([(0.0, "Stage 'scan' didn't change, skipping\n")], end=1.0) == {}
