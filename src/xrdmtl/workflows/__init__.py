"""Workflows over the layers below: file prediction, evaluation, label audit, adaptation and
cross-validation. (The paper's experiment and its report live beside the package, in ``experiments/``.)"""
