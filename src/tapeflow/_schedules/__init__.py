"""Schedules without I/O: when a cadence is due (``cadence``) and what a schedule does about
it (``decisions``), both pure, so that the backends store what was decided and nothing
else."""
