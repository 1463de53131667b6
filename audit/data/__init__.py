"""Data: the demonstrator, demonstrations files, imitator rollouts, padding and splits, seed streams."""
