"""Scoring a model: classification metrics (`metrics`, numpy only) and `mvrt evaluate` on a split (`evaluate`)."""
