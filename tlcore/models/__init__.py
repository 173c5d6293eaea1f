"""Models: the backbone registry, preprocessing layers, heads, inference functions, EfficientNet-Lite's weights."""
