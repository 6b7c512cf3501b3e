"""``python -m imgtrans`` runs the command line."""

import sys

from imgtrans.cli import main

sys.exit(main())
