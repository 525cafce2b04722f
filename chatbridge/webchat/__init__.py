"""The web chat channel: sessions, live events for widgets, the widget's static files."""
