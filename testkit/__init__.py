"""Test support only (the bare-interpreter finder): imported by tests and benchmarks, never by the product.

The ``tiny:<family>`` random-weight builders are a product feature and live in ``actors/tiny``.
"""
