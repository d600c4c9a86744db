"""admin domain: the console home, users and API tokens."""
