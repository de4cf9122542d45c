#!/bin/sh
# Pilot Telemetry on one Debian 12 machine (Python 3.11+), without Docker: Mosquitto and
# InfluxDB from the distribution (their own systemd units), ingest workers, the API and the alert
# service as systemd services of a `pilots` user. Run as root from a checkout of the project:
#
#   sudo deploy/local/install.sh [WORKERS] [BROKER_NAME ...]
#
# WORKERS: ingest workers to enable (default 2). BROKER_NAMEs: the names devices use to reach
# this machine, for the development TLS certificate (default: this machine's name). Safe to run
# again: it keeps /etc/pilots/pilots.env, the database users, the CA and the device passwords,
# and upgrades the installed package from the checkout.
#
# What goes where:
#   /opt/pilots/venv                  the package (pip install of this checkout)
#   /etc/pilots/pilots.env            settings and secrets (root:pilots 0640)
#   /etc/pilots/influx-admin.password InfluxDB's administrator (root 0600)
#   /var/lib/pilots/api               the API's token database, and alerts.sqlite (alarms and
#                                     outbox) which the alert service writes and the API reads
#   /var/lib/pilots/ingest-N          worker N's spool (the quarantine is in InfluxDB)
#   /etc/mosquitto/conf.d/pilots.conf listeners, TLS, auth, queue sizes
#   /etc/mosquitto/pilots/            dynamic-security.json (from `pilots devices provision`),
#                                     credentials.txt
#   /etc/mosquitto/certs/             the broker's TLS certificate and key
#   /etc/pilots/tls/ca/               the development CA (its key signs server certificates)
#   /usr/local/bin/pilots             the `pilots` command with these settings
set -eu

[ "$(id -u)" = 0 ] || { echo "run as root (sudo $0)" >&2; exit 1; }
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
workers=${1:-2}
[ $# -gt 0 ] && shift
[ $# -gt 0 ] || set -- "$(hostname)" localhost 127.0.0.1

say() { printf '\n== %s\n' "$*"; }
secret() { openssl rand -hex 24; }

say "packages"
apt-get update -q
apt-get install -y -q mosquitto mosquitto-clients python3-venv openssl curl
if ! apt-get install -y -q influxdb influxdb-client; then
    echo "no influxdb package here: install InfluxDB 1.8 from InfluxData's repository" >&2
    echo "(https://repos.influxdata.com), then run this script again" >&2
    exit 1
fi

say "user and directories"
id pilots >/dev/null 2>&1 || useradd --system --home-dir /var/lib/pilots --shell /usr/sbin/nologin pilots
install -d -o root -g pilots -m 0750 /etc/pilots
install -d -o pilots -g pilots -m 0750 /var/lib/pilots /var/lib/pilots/api
i=1
while [ "$i" -le "$workers" ]; do
    install -d -o pilots -g pilots -m 0750 "/var/lib/pilots/ingest-$i"
    i=$((i + 1))
done

say "the package"
[ -x /opt/pilots/venv/bin/python ] || python3 -m venv /opt/pilots/venv
/opt/pilots/venv/bin/pip install -q --upgrade pip
/opt/pilots/venv/bin/pip install -q --upgrade "$repo"
install -d /opt/pilots/docs
cp "$repo"/docs/*.md /opt/pilots/docs/
install -m 0755 "$here/pilots.sh" /usr/local/bin/pilots

say "settings"
if [ ! -f /etc/pilots/pilots.env ]; then
    sed -e "s|mqtt://{client_id}:CHANGE-ME@|mqtt://{client_id}:$(secret)@|" \
        -e "s|^PILOTS_INFLUX_PASSWORD=CHANGE-ME|PILOTS_INFLUX_PASSWORD=$(secret)|" \
        -e "s|^PILOTS_MQTT_SHARED_GROUP=ingest-CHANGE-ME|PILOTS_MQTT_SHARED_GROUP=ingest-$(openssl rand -hex 8)|" \
        "$here/pilots.env.example" >/etc/pilots/pilots.env
    chown root:pilots /etc/pilots/pilots.env
    chmod 0640 /etc/pilots/pilots.env
    echo "wrote /etc/pilots/pilots.env with new secrets"
fi
value() { sed -n "s/^$1=//p" /etc/pilots/pilots.env | tail -n 1; }

say "InfluxDB: loopback only, authentication on, database and account"
install -d /etc/systemd/system/influxdb.service.d
cat >/etc/systemd/system/influxdb.service.d/pilots.conf <<EOF
[Service]
Environment=INFLUXDB_HTTP_BIND_ADDRESS=127.0.0.1:8086
Environment=INFLUXDB_HTTP_AUTH_ENABLED=true
Environment=INFLUXDB_REPORTING_DISABLED=true
Environment=INFLUXDB_DATA_INDEX_VERSION=tsi1
EOF
systemctl daemon-reload
systemctl enable -q influxdb
systemctl restart influxdb
until curl -fsS -o /dev/null http://127.0.0.1:8086/ping; do sleep 1; done
if [ ! -f /etc/pilots/influx-admin.password ]; then
    (umask 077; secret >/etc/pilots/influx-admin.password)
    # With authentication on and no user yet, InfluxDB accepts exactly this statement.
    influx -host 127.0.0.1 -execute \
        "CREATE USER admin WITH PASSWORD '$(cat /etc/pilots/influx-admin.password)' WITH ALL PRIVILEGES"
fi
admin() { influx -host 127.0.0.1 -username admin -password "$(cat /etc/pilots/influx-admin.password)" -execute "$1"; }
db=$(value PILOTS_INFLUX_DATABASE)
user=$(value PILOTS_INFLUX_USERNAME)
admin "CREATE DATABASE \"$db\""
if admin "SHOW USERS" | grep -q "^$user "; then
    admin "SET PASSWORD FOR \"$user\" = '$(value PILOTS_INFLUX_PASSWORD)'"
else
    admin "CREATE USER \"$user\" WITH PASSWORD '$(value PILOTS_INFLUX_PASSWORD)'"
fi
admin "GRANT ALL ON \"$db\" TO \"$user\""

say "Mosquitto: TLS certificate, device logins, configuration"
install -d -o root -g mosquitto -m 0750 /etc/mosquitto/certs
if [ ! -f /etc/mosquitto/certs/server.crt ]; then
    install -d -m 0700 /etc/pilots/tls
    sh "$repo/deploy/tls/make-dev-ca.sh" /etc/pilots/tls "$@"
    install -o root -g mosquitto -m 0644 /etc/pilots/tls/certs/ca.crt /etc/pilots/tls/certs/server.crt /etc/mosquitto/certs/
    install -o root -g mosquitto -m 0640 /etc/pilots/tls/certs/server.key /etc/mosquitto/certs/
fi
install -d -o pilots -g mosquitto -m 0750 /etc/mosquitto/pilots
/usr/local/bin/pilots devices provision --dir /etc/mosquitto/pilots --ingest-workers "$workers"
# The dynamic-security plugin checks subscriptions too (the ACL file does not); its path
# depends on the architecture.
plugin=$(dpkg -L mosquitto | grep '/mosquitto_dynamic_security\.so$' | head -n 1)
if [ -z "$plugin" ]; then
    echo "this mosquitto package has no dynamic-security plugin: install Mosquitto 2.0 or later" >&2
    exit 1
fi
sed "s|^plugin .*|plugin $plugin|" "$here/mosquitto-pilots.conf" >/etc/mosquitto/conf.d/pilots.conf
chmod 0644 /etc/mosquitto/conf.d/pilots.conf
systemctl enable -q mosquitto
# a restart, not a reload: the plugin reads its file only when the broker starts
systemctl restart mosquitto

say "pilots services"
install -m 0644 "$here/pilots-api.service" "$here/pilots-ingest@.service" \
    "$here/pilots-alerts.service" /etc/systemd/system/
systemctl daemon-reload
systemctl enable -q --now pilots-api
# The alert service: its own broker session on the device topics (its login, pilots-alerts-eval,
# was provisioned above), its alarms in the API's directory.
systemctl enable -q pilots-alerts
i=1
while [ "$i" -le "$workers" ]; do
    systemctl enable -q "pilots-ingest@$i"
    systemctl restart "pilots-ingest@$i"
    i=$((i + 1))
done
systemctl restart pilots-api
systemctl restart pilots-alerts

say "done"
cat <<EOF
Running: mosquitto (1883 loopback, 8883 TLS), influxdb (127.0.0.1:8086), pilots-api,
pilots-ingest@1..$workers, pilots-alerts. Next:
  device passwords:  /etc/mosquitto/pilots/credentials.txt (hand them out, then remove it)
  devices trust:     /etc/mosquitto/certs/ca.crt
  a token:           sudo pilots tokens create --name ana --scope read
  health:            curl http://127.0.0.1:8000/health; curl http://127.0.0.1:9101/health
  alarms:            sudo pilots alerts list; journalctl -u pilots-alerts
EOF
