"""Evaluation: the metrics clinicians use, with confidence intervals, and labelled-set loaders."""

from .metrics import ClassMetrics, class_metrics, roc_auc, wilson_interval, youden_threshold

__all__ = ["ClassMetrics", "class_metrics", "roc_auc", "wilson_interval", "youden_threshold"]
