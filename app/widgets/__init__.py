"""The window's widgets, one per file."""
