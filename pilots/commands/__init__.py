"""The `pilots` command's commands, one module each, listed in `pilots.cli`.

Each module defines its command's options and handler and a `register(app)` that adds them to
the top-level app. Modules import only what their help needs at import time; services, stores
and simulators are imported inside the handlers, so that `pilots --help` stays fast.
"""
