"""``python -m mlsd`` runs the CLI."""

import sys

from mlsd.cli import main

sys.exit(main())
