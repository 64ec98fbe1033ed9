"""python -m daemon: the same as the ocr-inbox command."""

import sys

from daemon.cli import main

sys.exit(main())
