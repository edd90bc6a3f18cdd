"""Backends persist workflows, tasks, inbox events and history. Chosen by URL in ``connect``."""
