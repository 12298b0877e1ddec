"""`python -m bot` is the same as the `regolancer-orchestrator` command."""

import sys

from bot.cli import main

sys.exit(main())
