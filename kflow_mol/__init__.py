"""K-Flow molecular assembly: crystal clusters (data), rigid-body flow, models and metrics."""
