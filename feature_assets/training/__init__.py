"""Training and tuning a win model on the stored feature sets (no Dagster here).

- `data`: the training table, every set's columns joined with the label, split by time;
- `model`: LightGBM training, early stopping, and the metrics a bettor looks at first;
- `search`: an Optuna study shared by many workers, each trial run exactly once.
"""
