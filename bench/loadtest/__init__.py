"""The parts of bench/annotate_load.py (the annotator flow under load): content, the Django-side
sub-commands, gunicorn, the simulated clients, CPU from /proc, the report. Imported by annotate_load.py and the bench tests.
"""
