"""``python -m audit.cli``: the same as ``imitaudit``."""

import sys

from audit.cli import main

sys.exit(main())
