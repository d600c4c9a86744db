"""Sampling workers keep ranking queues stocked with completions of the deployed policy."""
