"""Manifest validation with Great Expectations (see `suite.run_checks`)."""

from pipeline.validation.suite import (
    Check,
    Failure,
    Report,
    Rules,
    TableResult,
    build_checks,
    run_checks,
)

__all__ = ["Check", "Failure", "Report", "Rules", "TableResult", "build_checks", "run_checks"]
