"""`python -m deploy.lab ...`: the lab's command line."""

from __future__ import annotations

import sys

from deploy.lab.lab import main

sys.exit(main())
