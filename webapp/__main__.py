"""``python -m webapp``: the studio, as ``editgan-studio`` and ``app.py`` start it (see ``webapp.launch``)."""

from webapp.launch import main

raise SystemExit(main())
