"""leadstream's benchmark harness: `python -m benchmarks.run` (or `make bench`).

Workloads are generated with fixed seeds (and cached under benchmarks/data/), every
figure is measured in the same run as its reference, and the results land in
benchmarks/results/LATEST.md and LATEST.json.
"""
