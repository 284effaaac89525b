"""The no-op task of bench_queue.py, in a module of its own so that worker processes can
import it (`--import queue_tasks`) under the same registry key as the client."""

import ferrocluster as fc


@fc.remote
def noop():
    # Ray's microbenchmark task returns b"ok".
    return b"ok"
