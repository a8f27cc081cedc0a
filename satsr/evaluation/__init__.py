"""Evaluation: metrics and their backbone weights, the eval verb's table, ranking and figure."""
