"""policies domain."""
