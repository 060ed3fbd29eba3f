"""``python -m tuning ...`` is ``zoo tune ...``."""

import sys

from zoo.cli import main

if __name__ == "__main__":
    sys.exit(main(["tune", *sys.argv[1:]]))
