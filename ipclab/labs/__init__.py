"""Lab checks and the lab generator."""
