"""usad2.probe: frozen-feature probing (docs/method.md#6-evaluation).

features (probed models as layers, cached per data dir), heads (weighted-sum / chosen-layer
linear or MLP probes and their dev selection), tasks (the task suites), metrics (accuracy,
macro-F1, mAP), run (a suite over models -> results.json, docs/formats.md#6-probe-and-report-results).
"""
