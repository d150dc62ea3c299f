"""`python -m devhost --help`."""

import sys

from devhost.cli import main

sys.exit(main())
