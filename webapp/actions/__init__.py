"""The studio's actions by notebook section, in plain Python (``Studio`` in ``webapp.controller`` joins them)."""
