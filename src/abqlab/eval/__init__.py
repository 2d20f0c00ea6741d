"""Evaluation: fast perplexity here, lm-eval tasks beside it."""
