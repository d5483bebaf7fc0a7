"""Ways of finding the area to repaint other than an uploaded black-and-white mask."""
