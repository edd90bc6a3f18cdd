"""``python -m tapeflow``: the ``tapeflow`` command."""

from tapeflow.cli import main

main()
