"""quality domain: agreement, gold items, throughput, label review."""
