"""Jobs: a whole run from settings to an output directory (one-shot search, trial-based
search, retraining, comparison)."""
