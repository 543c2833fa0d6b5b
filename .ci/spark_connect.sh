#!/usr/bin/env bash
# A Spark Connect server on loopback (the one that ships in the pyspark wheel), for the tests, the
# benchmark and CI: a Spark "cluster" the workbench does not own, in its own JVM.
#
#   .ci/spark_connect.sh start DIR   # start it (state, logs and pid under DIR); prints its sc:// URL
#   .ci/spark_connect.sh stop DIR    # stop the server started with DIR (no error if none runs)
#
# The server uses local[2], the UI off, an in-memory catalog shared by all its sessions and a
# warehouse under DIR; the port is a free one (or $SPARK_CONNECT_PORT). It is up in ~15-30 s
# (up to ~5 min on a heavily loaded machine; $SPARK_CONNECT_WAIT seconds at most, default 300).
set -euo pipefail
cd "$(dirname "$0")/.."

cmd="${1:-}"
dir="${2:-}"
if [[ -z "$cmd" || -z "$dir" ]]; then
    echo "usage: $0 start|stop DIR" >&2
    exit 2
fi
PY="${PYTHON:-.venv/bin/python}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
SPARK_HOME="$("$PY" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')"
export SPARK_HOME
export SPARK_LOG_DIR="$dir/log" SPARK_PID_DIR="$dir/pid" SPARK_IDENT_STRING="workbench"
export SPARK_LOCAL_IP=127.0.0.1 SPARK_LOCAL_HOSTNAME=localhost
export PYSPARK_PYTHON="$PY"
mkdir -p "$SPARK_LOG_DIR" "$SPARK_PID_DIR" "$dir/warehouse" "$dir/tmp"

case "$cmd" in
start)
    command -v java >/dev/null || { echo "spark_connect.sh: java (17+) is not on PATH" >&2; exit 1; }
    if [[ -s "$dir/url" ]] && "$SPARK_HOME/sbin/spark-daemon.sh" status \
        org.apache.spark.sql.connect.service.SparkConnectServer 1 >/dev/null 2>&1; then
        cat "$dir/url"   # already running
        exit 0
    fi
    port="${SPARK_CONNECT_PORT:-$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
    rm -f "$dir/url" "$SPARK_LOG_DIR"/*.out*
    "$SPARK_HOME/sbin/start-connect-server.sh" \
        --master "local[2]" \
        --driver-memory 1g \
        --conf spark.connect.grpc.binding.address=127.0.0.1 \
        --conf spark.connect.grpc.binding.port="$port" \
        --conf spark.connect.grpc.port.maxRetries=0 \
        --conf spark.ui.enabled=false \
        --conf spark.sql.catalogImplementation=in-memory \
        --conf spark.sql.warehouse.dir="$dir/warehouse" \
        --conf spark.local.dir="$dir/tmp" \
        --conf spark.sql.session.timeZone=UTC \
        --conf spark.sql.shuffle.partitions=2 \
        --conf spark.default.parallelism=2 \
        >"$dir/start.out" 2>&1
    log="$(ls "$SPARK_LOG_DIR"/*.out 2>/dev/null | head -1 || true)"
    deadline=$((SECONDS + ${SPARK_CONNECT_WAIT:-300}))   # 15-30 s idle; minutes when loaded
    while ((SECONDS < deadline)); do
        log="${log:-$(ls "$SPARK_LOG_DIR"/*.out 2>/dev/null | head -1 || true)}"
        if [[ -n "$log" ]] && grep -q "Spark Connect server started" "$log"; then
            echo "sc://127.0.0.1:$port" >"$dir/url"
            cat "$dir/url"
            exit 0
        fi
        if ! "$SPARK_HOME/sbin/spark-daemon.sh" status \
            org.apache.spark.sql.connect.service.SparkConnectServer 1 >/dev/null 2>&1; then
            break
        fi
        sleep 0.5
    done
    echo "spark_connect.sh: the Spark Connect server did not start; its log:" >&2
    tail -40 "${log:-$dir/start.out}" >&2 || true
    "$SPARK_HOME/sbin/stop-connect-server.sh" >/dev/null 2>&1 || true
    exit 1
    ;;
stop)
    "$SPARK_HOME/sbin/stop-connect-server.sh" >/dev/null 2>&1 || true
    rm -f "$dir/url"
    ;;
*)
    echo "usage: $0 start|stop DIR" >&2
    exit 2
    ;;
esac
