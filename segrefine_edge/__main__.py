"""`python -m segrefine_edge` is the `segrefine-edge` command."""

from segrefine_edge.cli import run

run()
