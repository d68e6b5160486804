"""Cross-run tables and statistics."""
