"""prompts domain."""
