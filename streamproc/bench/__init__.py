"""Benchmarks behind `streamproc bench`: each measures ratios side by side in one run."""
