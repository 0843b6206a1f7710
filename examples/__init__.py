"""Runnable examples of extending vlm-sweep; not part of the installed packages."""
