"""`python -m cdc.cli`: the same as the `cdc` command."""

import sys

from cdc.cli.main import main

sys.exit(main())
