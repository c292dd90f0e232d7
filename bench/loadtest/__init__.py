"""The parts of bench/annotate_load.py, the annotator flow under load: the synthetic content,
the Django-side setup/check/profile sub-commands, gunicorn, the simulated clients, CPU from /proc, the report.

Imported by bench/annotate_load.py (and the import test) only.
"""
