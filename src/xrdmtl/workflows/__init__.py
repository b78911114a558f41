"""Workflows over the layers below: file prediction, evaluation, label audit, cross-validation,
the paper experiment and its report."""
