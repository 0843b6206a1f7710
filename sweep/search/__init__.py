"""Which cells run how far: Pareto-aware successive halving (`halving` pure decisions, `rungs` the driver's
view, `scheduler` Tune's side).
"""
