"""Import TensorFlow and Keras without the C++ start-up messages reaching cell outputs.

TensorFlow's native logging writes straight to file descriptor 2 while it loads, and Jupyter copies that
descriptor into the first cell that imports it: the import runs with it pointed at ``/dev/null``.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _quiet_import() -> None:
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import keras  # noqa: F401
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


_quiet_import()

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.get_logger().setLevel("ERROR")  # retracing notices are not for readers

# One thread per process: on two cores one thread trains the paper's model nearly as fast
# as two, two one-thread processes side by side train 1.65 times as many models an hour,
# and bit-identical results need the same thread settings for every run.
THREADS = 1
tf.config.threading.set_intra_op_parallelism_threads(THREADS)
tf.config.threading.set_inter_op_parallelism_threads(THREADS)

__all__ = ["THREADS", "keras", "tf"]
