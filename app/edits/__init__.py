"""Labelers who fix completions: an edit of a ranking's best completion (an SFT row and a pair)."""
