"""Training and evaluation of the paper's networks on MVED-shaped data (needs torch to train)."""
