"""`python -m ferrocluster worker --redis URL --import mymodule [--queues py] [--concurrency N]
[--namespace NS] [--lease-ms MS] [--grace-ms MS] [--batch N]`."""

import argparse

from ferrocluster.runtime.worker import Worker


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m ferrocluster")
    commands = parser.add_subparsers(dest="command", required=True)
    worker = commands.add_parser("worker", help="run Python tasks (@fc.remote functions) from the Redis queue")
    worker.add_argument("--redis", required=True, help="redis://[user:pass@]host:port/db")
    worker.add_argument(
        "--import", dest="imports", action="append", default=[], help="a module whose @fc.remote functions to run"
    )
    worker.add_argument("--queues", default="py", help="comma-separated queue names (default: py)")
    worker.add_argument("--concurrency", type=int, default=1, help="tasks run at once (threads)")
    worker.add_argument("--namespace", default="fc", help="key prefix of the queue (must match its clients)")
    worker.add_argument("--lease-ms", type=int, default=30_000, help="the queue's lease (must match other workers)")
    worker.add_argument(
        "--grace-ms", type=int, default=10_000, help="on SIGTERM, time running tasks have to finish before being handed back"
    )
    worker.add_argument("--batch", type=int, default=16, help="most tasks a thread fetches at once")
    args = parser.parse_args()
    queues = args.queues.split(",")
    Worker(
        args.redis, args.imports, queues, args.concurrency, args.lease_ms, args.grace_ms, args.batch, args.namespace
    ).run()


if __name__ == "__main__":
    main()
