"""Test support: random-weight models of real families, for tests, benchmarks and the random-weight
quickstart.

Not part of the product: nothing under ``actors/`` or ``sweep/`` needs it except ``actors.resolve``, which
builds ``tiny:<family>`` model ids with :func:`testkit.tiny.build_tiny_model`.
"""
