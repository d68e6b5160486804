"""Flatness and sharpness measures."""
