"""Training of the paper's networks (needs torch): `train` (supervised, MVED-shaped data) and
`pretrain` (autoencoder, unlabelled clips), with their settings in `mvrt.training.settings` and
what both loops share in `mvrt.training.loop`. Evaluation lives in `mvrt.evaluation`."""
