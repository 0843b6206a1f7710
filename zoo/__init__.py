"""The toy model zoo: shipped checkpoints and dataset, and the trainer (``zoo.trainer``) that makes them."""
