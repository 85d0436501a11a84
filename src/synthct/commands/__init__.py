"""CLI command modules: each registers its commands on ``synthct.cli.app`` when imported."""
