"""Insight: evaluation, Grad-CAM, charts and the layer stack of a model."""
