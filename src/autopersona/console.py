"""The rich console every command prints its tables through.

On a terminal, tables take the terminal's width, as rich does.  When the output goes to a
file, a pipe or a CI log, rich would assume 80 columns and cut file names, strategy ids and
reasons short ("demo_out/fleet/tables/m…"); there the console is 160 columns wide instead,
unless ``COLUMNS`` says otherwise.

>>> c = output_console()
>>> c.width >= 80
True
"""

from __future__ import annotations

import os
import sys

from rich.console import Console

__all__ = ["PIPE_WIDTH", "output_console"]

#: columns of command output that does not go to a terminal (and ``COLUMNS`` is not set)
PIPE_WIDTH = 160


def output_console(*, stderr: bool = False) -> Console:
    """A console for command output: the terminal's width, or :data:`PIPE_WIDTH` off one.

    >>> import io
    >>> Console(file=io.StringIO()).width  # what rich assumes off a terminal
    80
    """
    stream = sys.stderr if stderr else sys.stdout
    on_terminal = hasattr(stream, "isatty") and stream.isatty()
    if on_terminal or os.environ.get("COLUMNS"):
        return Console(stderr=stderr)
    return Console(stderr=stderr, width=PIPE_WIDTH)
