"""``python -m ipclab.bench``: the same as ``python -m ipclab bench``."""

import sys

from . import cli

sys.exit(cli(sys.argv[1:]))
