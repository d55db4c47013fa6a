"""``python -m logitlab`` runs the command line."""

from .cli import main

main()
