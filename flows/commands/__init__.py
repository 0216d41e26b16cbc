"""Subcommands of the `replan` CLI, one module each."""
