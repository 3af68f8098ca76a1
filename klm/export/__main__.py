"""`python -m klm.export build REQUEST.json`: the TensorFlow build worker (see `klm.export.worker`)."""

import sys

from klm.export.worker import worker_main

if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
