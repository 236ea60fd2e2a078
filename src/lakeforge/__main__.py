"""``python -m lakeforge`` runs the CLI."""

from lakeforge.cli import main

main()
