"""``python -m editgan_core``: the batch command line (see ``editgan_core.cli``)."""

import sys

from editgan_core.cli import main

sys.exit(main())
