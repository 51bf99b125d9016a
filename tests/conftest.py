"""Shared test set-up. The `traces` fixture comes from the threadline pytest plugin."""
