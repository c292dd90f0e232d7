"""Running one function from many threads at once, for the tests of locking and over-fill."""

import threading

from django.db import connections


def run_concurrently(fn, args_list):
    """Call fn(*args) for each args in its own thread, all released together; returns the
    results in order and fails the test if any call raised. Each thread closes its own
    database connection."""
    barrier = threading.Barrier(len(args_list))
    errors, results = [], [None] * len(args_list)

    def worker(i, args):
        try:
            barrier.wait(timeout=30)
            results[i] = fn(*args)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(i, a)) for i, a in enumerate(args_list)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    return results
