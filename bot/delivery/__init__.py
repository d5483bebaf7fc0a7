"""Showing jobs in Discord: the router hands each job's events to its ``Delivery``, which turns
them into messages; ``render`` says what those messages show."""
