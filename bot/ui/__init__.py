"""Discord components shared by cogs and deliveries; they never import a cog."""
