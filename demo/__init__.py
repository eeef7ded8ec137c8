"""Runnable demonstrations of what proxyd is for; see scripts/demo."""
