"""Figures built from results stores only (matplotlib, PNG and PDF; optionally wandb images)."""
