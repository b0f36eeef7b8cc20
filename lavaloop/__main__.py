"""`python -m lavaloop` is the `lavaloop` command."""
import sys

from lavaloop.deploy.cli import main

sys.exit(main())
