"""Before any work: what each cell will do (`dry_run`), whether it fits a GPU (`memory`), which cells share
one generation (`budgets`).
"""
