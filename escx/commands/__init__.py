"""Codec subcommands of the ``escx`` console script (the training ones go through LightningCLI)."""
