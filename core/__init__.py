"""The shared kernel of Pilot Telemetry.

Settings, the pilot/device registry, the columnar `Readings` batch, the store contract with its
adapters, and the vectorised aggregation core. Nothing here imports `ingest`, `api`,
`simulators` or `pilots`: every other package depends on this one, never the reverse.
"""
