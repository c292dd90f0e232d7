"""Django management commands of the training app (see commands/); loaded by manage.py only."""
