"""Benchmark scripts (not tests): each builds its own throw-away database, runs, prints numbers.
Nothing in the app imports bench; the scripts import ``bench.common`` and, inside functions
run after ``django.setup()`` in their own throw-away environment, the project's packages.

Run a script as a file (``python bench/export.py``: its first lines put the repository on
sys.path) or as a module (``python -m bench.export``). See bench/README.md.
"""
