"""Health, worker status."""
