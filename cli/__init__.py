"""tuneflow's command line, a tool beside the app: ``python -m cli <command> ...``.

It imports the library in ``shared/`` (the validator, settings, run records) but is not part of the
deployed function app: ``.funcignore`` leaves this package out, and ``requirements.txt`` carries only
what the functions import (the CLI's extra packages are in ``requirements-dev.txt``).
"""
