"""Training runs, losses and metrics: built by the training issue (#4)."""
