"""``python -m tuning ...`` is ``zoo tune ...``. A process of a ``zoo tune --workers N``
cluster (started so) is stopped by that command, which speaks for it: it ends without a
word (:func:`zoo.cli.main`'s ``quiet_stop``)."""

import os
import sys

from tuning.search import _CLUSTER_MEMBER
from zoo.cli import main

if __name__ == "__main__":
    sys.exit(main(["tune", *sys.argv[1:]], quiet_stop=bool(os.environ.get(_CLUSTER_MEMBER))))
