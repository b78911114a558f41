"""The research harness beside the package (not installed with it): the paper's four comparisons
(:mod:`experiments.experiment`, ``make experiment``), their report (:mod:`experiments.report`) and the
shipped default model's training recipe (:mod:`experiments.default_model`, ``make model``). It imports
``xrdmtl``; the package never imports it (``xrdmtl experiment`` finds it in a source checkout)."""
