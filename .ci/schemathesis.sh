#!/usr/bin/env bash
# Fuzz the live OpenAPI schema with schemathesis' default checks (config: schemathesis.toml).
# Starts `nnforge serve --no-worker` on a free port with a throwaway NNFORGE_HOME and seeds it
# (.ci/schemathesis_seed.py), so the routes under a job, an evaluation and a sweep see real ids;
# exits non-zero on a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
home=$(mktemp -d)
port=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export NNFORGE_HOME="$home" PORT="$port" RATE_LIMIT_PER_SECOND=100000 RATE_LIMIT_BURST=100000 \
       UNAUTHENTICATED_RATE_LIMIT_PER_SECOND=100000 UNAUTHENTICATED_RATE_LIMIT_BURST=100000 \
       MAX_QUEUED_JOBS_PER_OWNER=1000000
unset DATABASE_URL REDIS_URL
.venv/bin/nnforge serve --no-worker >"$home/serve.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$home"' EXIT
for _ in $(seq 1 120); do
    curl -sf "http://127.0.0.1:$port/livez" >/dev/null && break
    sleep 0.5
done
token=$(cat "$home/token")
# Real jobs (one started from the other), checkpoints, a report and a sweep, and the settings that point the
# fuzzer's ids at them: appended to a copy of schemathesis.toml, which pytest's schemathesis also reads.
.venv/bin/python .ci/schemathesis_seed.py "http://127.0.0.1:$port" "$token" >"$home/seed.toml"
cat schemathesis.toml "$home/seed.toml" >"$home/schemathesis.toml"
# One worker: schemathesis' coverage phase is not thread-safe on Python 3.11 (an AST recursion error).
.venv/bin/schemathesis --config-file "$home/schemathesis.toml" run "http://127.0.0.1:$port/openapi.json" \
    -H "Authorization: Bearer $token" --max-examples 30 --workers 1 --seed 1
