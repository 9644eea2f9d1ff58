"""driftloop's benchmarks. ``make bench`` runs them all; ``python -m bench.<name>`` runs one.

Each prints a table and writes ``out/bench/<name>.json``: its figures, a named baseline measured
in the same run, the ratios, the versions and the machine.
"""
