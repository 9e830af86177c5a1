"""``python -m hmore ...`` runs the same command line as the ``hmore`` console script."""
import sys

from hmore.cli import main

sys.exit(main())
