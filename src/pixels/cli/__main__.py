"""``python -m pixels.cli``: the ``pixels`` command."""

from pixels.cli import main

main()
