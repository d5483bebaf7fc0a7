"""``inpaintbot check``: is this installation ready to run the bot?

Checks, in order, what ``inpaintbot run`` needs: the configuration, the data directory, the database,
the device, the model(s), the ControlNets, the painter's public address and the Discord token, then
prints the invite URL. One line per check, ``ok``, ``warn`` or ``FAIL`` and what was found, so an
operator fixes everything in one pass; the exit status is 1 when anything failed. The database is
read, not migrated; the token is never printed.

``report`` runs the checks in order and prints them; ``machine`` checks what the bot runs on (data
folder, database, device), ``models`` loads or looks up the models, ``services`` reaches what is over the
network (Redis workers, the painter's public address, Discord). Each check returns a ``result.Check``.
"""
