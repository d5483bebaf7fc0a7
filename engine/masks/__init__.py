"""Mask sources: one module per way of saying what to repaint, each giving the engine a mask "L"."""
