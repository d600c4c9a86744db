"""demonstrations domain."""
