"""Qt/magicgui dock widgets (thin: they build configs and call the compute packages)."""
