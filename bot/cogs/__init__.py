"""Extensions, one per feature area, loaded by ``bot.app.InpaintBot``."""
