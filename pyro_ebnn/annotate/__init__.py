"""Helpers for the annotation step: candidate regions to show a person and the images to ask about."""
