"""The job queue: the ``JobQueue`` protocol and its events (``base``, ``events``), and its backends."""
