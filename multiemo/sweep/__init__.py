"""Sweeps and studies on Optuna: trials chosen on validation, then test once for the chosen configuration."""
