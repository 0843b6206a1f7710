"""The grid: grid.yaml validated (`config`) and expanded into cells (`cells`)."""
