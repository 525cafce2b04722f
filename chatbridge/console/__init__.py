"""The operator console's files: a single-page app in vanilla JS and CSS (no build step),
served by :mod:`chatbridge.api.console` under ``/console``."""
