"""vlm-sweep's driver: grid -> data -> plan -> execute (search decides how far) -> results -> quality ->
publish.

`run` is the command line, `engine` the short plan -> execute -> publish.
"""
