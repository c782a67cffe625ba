"""``python -m sdlens.cli ...``: the same app as the ``sdlens`` console script."""

from sdlens.cli import main

main()
