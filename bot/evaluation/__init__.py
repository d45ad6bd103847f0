"""Offline evaluation: pure metrics, predictions-file scoring and report writing.

This package deliberately imports nothing heavy (no torch, no model code) so that
metrics and reports can be computed and tested without a backbone.
Import the submodules directly::

    from bot.evaluation.metrics import text_metrics
    from bot.evaluation.predictions import read_predictions, score_predictions
    from bot.evaluation.report import write_report
"""
