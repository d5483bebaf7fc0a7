"""Extensions, one per feature area, loaded by ``bot.client.InpaintBot``."""
