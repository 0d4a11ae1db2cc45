"""usad2.probe: frozen-feature probing (SPEC.md §6).

features (probed models as layers, cached per data dir), heads (weighted-sum / chosen-layer
linear or MLP probes and their dev selection), tasks (the task suites), metrics (accuracy,
macro-F1, mAP), run (a suite over models -> results.json in DESIGN.md §8's format).
"""
