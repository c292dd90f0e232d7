"""manage.py commands of the training app: train_head (a run, gated) and evaluate_model (Table 3).

Run by manage.py only; they call training.services, training.data and training.train."""
