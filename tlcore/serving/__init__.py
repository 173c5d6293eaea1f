"""Serving: predictions for photos, folders and zips, and exports that load back."""
