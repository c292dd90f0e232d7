"""Benchmark scripts (not tests), each with its own throw-away database, and their shared helpers (common.py).
Nothing in the app imports bench; the scripts import bench.common (annotate_load.py also bench.loadtest).

Run a script as a file (``python bench/export.py``: its first lines put the repository on
sys.path) or as a module (``python -m bench.export``). Project code is imported inside
functions, after ``django.setup()`` in the process that has the throw-away environment:
the stated exception to "no function-level imports of another package". See bench/README.md.
"""
