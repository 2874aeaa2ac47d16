"""``python -m editgan_core``: the project's command line (``editgan_core.commands``, also ``editgan``)."""

import sys

from editgan_core.commands import main

sys.exit(main(prog="python -m editgan_core"))
