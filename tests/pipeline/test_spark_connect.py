"""A Spark Connect URL (``sc://host:port``) works against a real Connect
server: the server is Spark's own (``SparkConnectServer``, started with
Spark's defaults, as a cluster's would be), the client is our warehouse in a
second process (tests/pipeline/spark_connect_client.py)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import _spark_or_skip, free_port, stop_group

pytestmark = [pytest.mark.spark, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def connect_url(tmp_path_factory):
    _spark_or_skip()
    from pyspark.find_spark_home import _find_spark_home

    home = tmp_path_factory.mktemp("connect")
    port = free_port()
    log = (home / "server.log").open("w")
    server = subprocess.Popen(
        [
            str(Path(_find_spark_home()) / "bin" / "spark-submit"),
            "--class",
            "org.apache.spark.sql.connect.service.SparkConnectServer",
            "--master",
            "local[1]",
            "--conf",
            f"spark.connect.grpc.binding.port={port}",
            "--conf",
            "spark.connect.grpc.binding.address=127.0.0.1",
            "--conf",
            f"spark.sql.warehouse.dir={home / 'warehouse'}",
            "--conf",
            "spark.sql.catalogImplementation=in-memory",
            "--conf",
            "spark.ui.enabled=false",
            "--conf",
            "spark.driver.memory=1g",
            "--conf",
            "spark.driver.extraJavaOptions=-XX:+UseSerialGC -XX:TieredStopAtLevel=1",
            "--conf",
            "spark.sql.codegen.wholeStage=false",
            "--conf",
            "spark.sql.adaptive.enabled=false",
            # sized for tiny data, as the test session is: 200 shuffle tasks per aggregate cost 4x the time
            "--conf",
            "spark.sql.codegen.factoryMode=NO_CODEGEN",
            "--conf",
            "spark.sql.shuffle.partitions=1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=home,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            if server.poll() is not None:
                pytest.fail(f"the Connect server exited: {(home / 'server.log').read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("the Connect server did not listen within 180 s")
                time.sleep(0.5)
        yield f"sc://127.0.0.1:{port}"
    finally:
        stop_group(server, timeout=30)
        log.close()


def test_connect_url_gives_the_same_features_and_write_back(connect_url):
    done = subprocess.run(
        [sys.executable, "-m", "tests.pipeline.spark_connect_client", connect_url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["ok"] and result["rows"] > 20
    # a server with Spark's defaults: the warehouse set what it relies on for its own session
    assert result["settings"] == {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.timestampType": "TIMESTAMP_NTZ",
        "spark.sql.sources.partitionOverwriteMode": "dynamic",
    }
