"""Training: the config, the data loader, DDP setup and the loop."""
