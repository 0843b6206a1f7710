"""The result store under output_dir (`store`), a finished trial turned into a scored cell (`recorder`),
the output-dir lock and disk-full handling.
"""
