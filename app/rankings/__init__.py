"""rankings domain."""
