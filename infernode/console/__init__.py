"""The operator console: server-rendered pages on the node's web port (docs/CONSOLE.md).

`infernode.console.app.create_console_router(node)` builds the routes; `config` holds the
settings section and is imported by the settings module, so this package imports nothing
heavy at its top.
"""
