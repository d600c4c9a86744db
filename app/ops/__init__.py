"""The ops console: training rounds, the model registry, worker status."""
