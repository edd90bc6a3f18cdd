"""The moving parts of a Worker: pollers, task runners, lease renewal, the instance cache."""
