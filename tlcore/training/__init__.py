"""Training: the trainer and its stages, the feature cache, callbacks, distribution, the learning-rate finder."""
