"""A single-node Apache Kafka broker in KRaft mode, from Maven Central, run by the local Java.

The jars are resolved once per version into the user's cache (Maven keeps its own copy in
``~/.m2`` too); the broker's configuration, data and log live in ``<state_dir>/kafka``. A second
``up`` reuses the formatted storage, so topics and committed offsets survive restarts.

References:
    KRaft configuration, https://kafka.apache.org/39/documentation.html#kraft_config
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import uuid
from importlib.resources import files
from pathlib import Path

from kafka import KafkaAdminClient

from driftloop.errors import StackError
from driftloop.stack.process import ManagedProcess, port_is_free, require_free_port
from driftloop.stack.settings import LocalStackSettings

MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise StackError(
            f"`{name}` is not on PATH; the local Kafka broker needs Java 17+ and Maven "
            "(Debian: apt-get install openjdk-17-jre-headless maven)"
        )
    return path


def new_cluster_id() -> str:
    """A random KRaft cluster id, as Kafka makes them: never starting with "-", which the
    storage tool would read as an option."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


class KafkaBroker:
    """The local broker: :meth:`up`, :meth:`down`, :meth:`ready`, :meth:`describe`."""

    def __init__(self, settings: LocalStackSettings) -> None:
        self.settings = settings
        self.version = settings.kafka_version
        self.libs = settings.cache_dir / f"kafka-{self.version}" / "libs"
        self.home = (settings.state_dir / "kafka").resolve()
        self.data = self.home / "data"
        self.config = self.home / "server.properties"
        self.process = ManagedProcess("kafka", self.home, marker=str(self.config))

    # --- install -------------------------------------------------------------------------

    def install(self) -> Path:
        """Resolve the broker's jars with Maven unless this version's are already cached."""
        complete = self.libs.parent / ".complete"
        if complete.exists():
            return self.libs
        require_tool("java")
        mvn = require_tool("mvn")
        pom = Path(str(files("driftloop.stack").joinpath("kafka/pom.xml")))
        staging = self.libs.with_name("libs.partial")
        shutil.rmtree(staging, ignore_errors=True)
        argv = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            f"-Dkafka.version={self.version}",
            f"-DoutputDirectory={staging}",
            "-DincludeScope=runtime",
        ]
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise StackError(
                f"Maven could not resolve Apache Kafka {self.version}: "
                f"{(result.stdout + result.stderr).strip()[-2000:]}"
            )
        shutil.rmtree(self.libs, ignore_errors=True)
        staging.rename(self.libs)
        complete.write_text(self.version + "\n")
        return self.libs

    # --- lifecycle -----------------------------------------------------------------------

    def up(self, timeout: float = 90.0) -> str:
        """Start the broker unless it already runs; return once it answers a metadata request."""
        if self.process.pid() is not None:
            self.process.wait_until(self.ready, timeout, f"Kafka broker ({self.address})")
            return "running"
        s = self.settings
        require_free_port(s.kafka_port, "the Kafka broker", "KAFKA_PORT")
        require_free_port(s.kafka_controller_port, "the KRaft controller", "KAFKA_CONTROLLER_PORT")
        java = require_tool("java")
        self.install()
        self._configure()
        self._format(java)
        self.process.start(
            [
                java,
                f"-Xmx{s.kafka_heap}",
                "-XX:+UseG1GC",
                "-Djava.awt.headless=true",
                f"-Dlog4j.configuration=file:{self.home / 'log4j.properties'}",
                "-cp",
                self._classpath(),
                MAIN_CLASS,
                str(self.config),
            ]
        )
        self.process.wait_until(self.ready, timeout, f"Kafka broker ({self.address})")
        return "started"

    def down(self, timeout: float = 30.0) -> bool:
        """Stop the broker cleanly (controlled shutdown); False if it was not running."""
        return self.process.stop(timeout)

    @property
    def address(self) -> str:
        return self.settings.kafka_address

    def ready(self) -> bool:
        """True when the broker answers a metadata request."""
        return self.describe() is not None

    def describe(self) -> dict[str, object] | None:
        """The cluster's metadata (cluster id, brokers), or None if nobody answers."""
        if port_is_free(self.settings.kafka_port):
            return None  # nobody listens yet; spare the client's connection-error logs
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=[self.address],
                client_id="driftloop-stack",
                bootstrap_timeout_ms=1000,
                request_timeout_ms=2000,
            )
        except Exception:  # any failure to talk to it means: not ready yet
            return None
        try:
            return dict(admin.describe_cluster())
        except Exception:
            return None
        finally:
            admin.close()

    # --- files ---------------------------------------------------------------------------

    def _classpath(self) -> str:
        return f"{self.libs}/*"

    def _configure(self) -> None:
        s = self.settings
        self.data.mkdir(parents=True, exist_ok=True)
        # Rewritten on every start, so that a changed port or partition count applies.
        properties = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{s.kafka_controller_port}",
            "listeners": (
                f"PLAINTEXT://127.0.0.1:{s.kafka_port},CONTROLLER://127.0.0.1:"
                f"{s.kafka_controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{s.kafka_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.data),
            "num.partitions": str(s.topic_partitions),
            # One node: internal topics cannot have more replicas than that.
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            # Topics come from settings; a typo in a topic name should fail, not create one.
            "auto.create.topics.enable": "false",
            # A lone consumer should not wait 3 s for a rebalance that has nobody to wait for.
            "group.initial.rebalance.delay.ms": "0",
        }
        self.config.write_text("".join(f"{k}={v}\n" for k, v in properties.items()))
        (self.home / "log4j.properties").write_text(
            "log4j.rootLogger=INFO, stdout\n"
            "log4j.appender.stdout=org.apache.log4j.ConsoleAppender\n"
            "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n"
            "log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
            "log4j.logger.kafka=INFO\nlog4j.logger.org.apache.kafka=INFO\n"
            "log4j.logger.state.change.logger=WARN\nlog4j.logger.kafka.request.logger=WARN\n"
        )

    def _format(self, java: str) -> None:
        """Format the KRaft storage once; a formatted folder is kept as it is."""
        if (self.data / "meta.properties").exists():
            return
        cluster_id = new_cluster_id()
        argv = [
            java,
            "-cp",
            self._classpath(),
            STORAGE_TOOL,
            "format",
            "-t",
            cluster_id,
            "-c",
            str(self.config),
        ]
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise StackError(f"formatting Kafka storage failed: {result.stdout}{result.stderr}")
