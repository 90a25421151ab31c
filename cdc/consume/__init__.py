"""The consume loop every lane runs (change topics -> sink -> commit), its backoff and dead letters."""
