#!/usr/bin/env bash
# Start the machine's PostgreSQL 15 on 127.0.0.1 and create a test role and
# database. Prints the URL to use as CHURN_TEST_POSTGRES_URL. Idempotent.
set -euo pipefail
PORT="${CHURN_PG_PORT:-5432}"
DB="${CHURN_PG_DB:-churn_test}"
ROLE="${CHURN_PG_ROLE:-churn}"
PASS="${CHURN_PG_PASSWORD:-churn}"

if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  echo "pg_ctlcluster not found: install PostgreSQL 15 (apt-get install postgresql-15)" >&2
  exit 1
fi
if ! pg_lsclusters -h 2>/dev/null | awk '{print $1" "$2" "$4}' | grep -q "^15 main online"; then
  pg_ctlcluster 15 main start -o "-c listen_addresses=127.0.0.1 -c port=${PORT}" >&2 \
    || pg_ctlcluster 15 main start >&2
fi
for _ in $(seq 1 30); do
  su postgres -c "pg_isready -q -h 127.0.0.1 -p ${PORT}" && break
  sleep 0.5
done
su postgres -c "psql -q -p ${PORT} -v ON_ERROR_STOP=1" >/dev/null <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${ROLE}') THEN
    CREATE ROLE ${ROLE} LOGIN PASSWORD '${PASS}' CREATEDB;
  END IF;
END \$\$;
SQL
if ! su postgres -c "psql -p ${PORT} -tAc \"SELECT 1 FROM pg_database WHERE datname='${DB}'\"" | grep -q 1; then
  su postgres -c "createdb -p ${PORT} -O ${ROLE} ${DB}"
fi
echo "postgresql://${ROLE}:${PASS}@127.0.0.1:${PORT}/${DB}"
