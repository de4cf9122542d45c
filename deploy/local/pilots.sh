#!/bin/sh
# `pilots` with the deployment's settings, as the pilots user: installed as
# /usr/local/bin/pilots by deploy/local/install.sh. Run it with sudo:
#   sudo pilots tokens create --name ana
#   sudo pilots devices provision --dir /etc/mosquitto/pilots
#   sudo pilots quarantine list      (every worker's refusals, kept in InfluxDB)
#   sudo pilots alerts list --active (the alarms pilots-alerts.service records)
set -eu
set -a
. /etc/pilots/pilots.env
set +a
# The api's directory (its tokens; the alarms, which pilots-alerts.service writes there too)
# unless the caller names another (a worker's spool).
export PILOTS_DATA_DIR="${PILOTS_DATA_DIR:-/var/lib/pilots/api}"
# The pilots user may not enter the caller's directory (settings look for a .env there).
cd /var/lib/pilots
if [ "$(id -u)" = 0 ]; then
    exec runuser -u pilots -- /opt/pilots/venv/bin/pilots "$@"
fi
exec /opt/pilots/venv/bin/pilots "$@"
