"""Running the cells on Ray: Tune trials (`trials`), the per-cell pipeline (`pipeline`, `stages`), the
model-host pool (`hosts`), a cell's costs (`measure`), progress, stopping and callbacks.
"""
