"""The mask painter: a page the bot serves itself, reached by a signed one-use link from Discord."""
