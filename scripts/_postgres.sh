# Sourced by scripts/test: start the local PostgreSQL cluster if it is installed but stopped.
if [ -z "${TAPEFLOW_TEST_POSTGRES_URL:-}" ] && command -v pg_ctlcluster >/dev/null 2>&1 \
    && ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    for version in $(ls /etc/postgresql 2>/dev/null); do
        echo "== starting PostgreSQL $version"
        pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    done
    for _ in $(seq 1 30); do
        pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null && break
        sleep 0.5
    done
fi
