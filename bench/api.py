"""What HTTP costs on top of the work it serves: the same approvals through the services
directly (the core rate) and through `mdstudio serve` (the HTTP rate), in one run on one
PostgreSQL, side by side.

1. Core: `--clients` worker processes submit and approve requests by calling the services (the
   workload of bench/approvals.py).
2. HTTP: `mdstudio serve --workers 2` in its own process; `--clients` client processes submit
   and approve the same number of requests over keep-alive connections.

The two run in alternating rounds (`--rounds`, 3), so that a noisy minute on this shared machine
falls on both sides; then the clients read the inbox (`GET /approvals?status=approved&limit=20`).

The clients speak HTTP/1.1 on plain sockets: a client's own CPU is spent on the same two cores as
the server's, and per approval httpx cost 2.2 ms of CPU here, `http.client` 0.6 ms.

Prints p50/p99 per route; the CPU each approval cost on each side, split into the clients, the
server's processes and the rest of the machine (PostgreSQL and the kernel); each round's rates;
checks that every approval was applied exactly once (one entity version and four events each);
and ends with `http/core approvals ratio: R`, the median of the rounds' ratios.

    python bench/api.py [--pairs 2000] [--reads 5000] [--clients 4] [--workers 2] [--rounds 3]
    MDSTUDIO_BENCH_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing as mp
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict

import orjson
import sqlalchemy as sa
from approvals import request, worker

from mdstudio_core.adapters import migrations, tables
from mdstudio_core.adapters.database import create_store_engine
from mdstudio_core.domain.model import Identity
from mdstudio_core.service_layer import tokens
from mdstudio_core.service_layer.unit_of_work import UnitOfWork

ADMIN_URL = os.environ.get(
    "MDSTUDIO_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
Latencies = dict[str, list[float]]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
WARM_UP = 25  # untimed submit+approve pairs per HTTP client first


class Client:
    """One keep-alive connection, timing each request under its route's name. HTTP/1.1 spoken
    directly on a socket, as load generators (wrk, hey) do: the server always answers with a
    Content-Length, and the client's CPU, spent on the server's two cores, stays small."""

    def __init__(self, port: int, headers: dict[str, str], latencies: Latencies) -> None:
        self.socket = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        fields = {"Host": f"127.0.0.1:{port}", **headers, "Content-Type": "application/json"}
        self.head = "".join(f"{name}: {value}\r\n" for name, value in fields.items())
        self.received = b""
        self.latencies = latencies

    def call(self, route: str, method: str, path: str, body: object = None) -> dict:
        data = orjson.dumps(body) if body is not None else b""
        request = f"{method} {path} HTTP/1.1\r\n{self.head}Content-Length: {len(data)}\r\n\r\n"
        started = time.perf_counter()
        self.socket.sendall(request.encode() + data)
        status, content = self._response()
        self.latencies[route].append((time.perf_counter() - started) * 1000)
        if status >= 300:
            raise RuntimeError(f"{method} {path}: {status} {content[:300]!r}")
        return orjson.loads(content)

    def _response(self) -> tuple[int, bytes]:
        while b"\r\n\r\n" not in self.received:
            self.received += self._recv()
        head, _, rest = self.received.partition(b"\r\n\r\n")
        status_line, *fields = head.split(b"\r\n")
        length = next(
            int(value)
            for name, _, value in (field.partition(b":") for field in fields)
            if name.lower() == b"content-length"
        )
        while len(rest) < length:
            rest += self._recv()
        self.received = rest[length:]
        return int(status_line.split(b" ", 2)[1]), rest[:length]

    def _recv(self) -> bytes:
        chunk = self.socket.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        return chunk


def in_threads(target, arguments: list[tuple]) -> float:
    """Run `target(*arguments[i])` in one thread each; the wall time of the slowest."""
    threads = [threading.Thread(target=target, args=args) for args in arguments]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def machine_busy_seconds() -> float:
    """CPU time all cores spent since boot on work that is not niced (user, system,
    interrupts): a niced neighbour such as `make mutation` is left out."""
    with open("/proc/stat") as stat:
        user, _nice, system, _idle, _iowait, irq, softirq = map(int, stat.readline().split()[1:8])
    return (user + system + irq + softirq) / CLOCK_TICKS


def process_tree_seconds(root: int) -> float:
    """User+system CPU time of a process and all its descendants (the server's workers)."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:
            continue  # it ended meanwhile
        parents[int(entry)] = int(fields[1])
        times[int(entry)] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        tree.update(children)
        frontier.extend(children)
    return sum(times.get(pid, 0.0) for pid in tree)


class CpuMeter:
    """CPU seconds spent during a phase: the machine's (not niced) and the server's."""

    def __init__(self, server_pid: int | None = None) -> None:
        self.server_pid = server_pid
        self.machine = machine_busy_seconds()
        self.server = process_tree_seconds(server_pid) if server_pid else 0.0

    def stop(self, clients: float) -> dict[str, float]:
        server = process_tree_seconds(self.server_pid) - self.server if self.server_pid else 0.0
        machine = machine_busy_seconds() - self.machine
        return {"clients": clients, "server": server, "other": machine - clients - server}


def core_phase(
    url: str, tenant: uuid.UUID, clients: int, per_client: int
) -> tuple[float, dict, dict]:
    out: mp.Queue = mp.Queue()
    start = time.time() + 1.0
    processes = [
        mp.Process(target=worker, args=(url, tenant, w, per_client, start, out))
        for w in range(clients)
    ]
    for process in processes:
        process.start()
    meter = CpuMeter()
    results = [out.get() for _ in processes]
    cpu = meter.stop(clients=sum(seconds for _, _, _, seconds in results))
    for process in processes:
        process.join()
    wall = max(finished for _, _, finished, _ in results) - start
    latencies = {
        "submit (service)": [v for s, _, _, _ in results for v in s],
        "approve (service)": [v for _, a, _, _ in results for v in a],
    }
    return wall, latencies, cpu


def http_client(
    port: int, index: int, pair: tuple[dict, dict], count: int, label: str, start: float, out
) -> None:
    """One client process: `count` submit+approve pairs over two keep-alive connections."""
    latencies: Latencies = defaultdict(list)
    submitter, decider = Client(port, pair[0], latencies), Client(port, pair[1], latencies)
    time.sleep(max(0.0, start - time.time()))
    cpu_started = time.process_time()
    for i in range(count):
        submitted = submitter.call(
            "POST /approvals", "POST", "/approvals", request(f"bench.{label}{index}.k{i}")
        )
        decider.call(
            "POST /approvals/{id}/approve", "POST", f"/approvals/{submitted['id']}/approve"
        )
    out.put((dict(latencies), time.time(), time.process_time() - cpu_started))


def http_phase(
    server: subprocess.Popen, port: int, pairs: list[tuple[dict, dict]], per_client: int, label: str
) -> tuple[float, dict, dict]:
    """The clients are processes, as the core's workers are: neither side shares a GIL."""
    out: mp.Queue = mp.Queue()
    start = time.time() + 1.0
    processes = [
        mp.Process(target=http_client, args=(port, i, pair, per_client, label, start, out))
        for i, pair in enumerate(pairs)
    ]
    for process in processes:
        process.start()
    meter = CpuMeter(server.pid)
    results = [out.get() for _ in processes]
    cpu = meter.stop(clients=sum(seconds for _, _, seconds in results))
    for process in processes:
        process.join()
    latencies: Latencies = defaultdict(list)
    for client_latencies, _, _ in results:
        for route, values in client_latencies.items():
            latencies[route].extend(values)
    return max(finished for _, finished, _ in results) - start, latencies, cpu


def read_phase(port: int, headers: dict, clients: int, total: int) -> tuple[float, dict]:
    latencies: Latencies = defaultdict(list)

    def client_loop() -> None:
        client = Client(port, headers, latencies)
        for _ in range(total // clients):
            client.call("GET /approvals (inbox)", "GET", "/approvals?status=approved&limit=20")

    wall = in_threads(client_loop, [()] * clients)
    return wall, latencies


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def report(latencies: Latencies) -> None:
    for route, values in latencies.items():
        print(
            f"{route:<32}{len(values):>9}"
            f"{percentile(values, 50):>9.1f}{percentile(values, 99):>9.1f}"
        )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(url: str, workers: int) -> tuple[subprocess.Popen, int]:
    port = free_port()
    command = [sys.executable, "-m", "mdstudio_core.entrypoints.cli", "serve", "--port"]
    server = subprocess.Popen(
        [*command, str(port), "--workers", str(workers), "--no-access-log"],
        env={**os.environ, "MDSTUDIO_DATABASE_URL": url},
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            probe = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            probe.request("GET", "/healthz")
            if probe.getresponse().status == 200:
                return server, port
        except OSError:
            time.sleep(0.2)
    server.terminate()
    raise SystemExit("the server did not start")


def exactly_once(engine: sa.Engine, expected: int) -> tuple[bool, str]:
    with engine.connect() as connection:
        approved = connection.execute(
            sa.select(sa.func.count()).where(tables.approvals.c.status == "approved")
        ).scalar_one()
        per_approval = connection.execute(
            sa.select(tables.events.c.correlation_id, sa.func.count()).group_by(
                tables.events.c.correlation_id
            )
        ).all()
        versions = connection.execute(
            sa.select(sa.func.max(tables.global_metadata.c.version), sa.func.count())
        ).one()
    ok = (
        approved == expected
        and len(per_approval) == expected
        and all(count == 4 for _, count in per_approval)
        and tuple(versions) == (1, expected)
    )
    events = sum(count for _, count in per_approval)
    return ok, f"{approved} approved, {events} events"


def merged(into: Latencies, more: Latencies) -> None:
    for route, values in more.items():
        into[route].extend(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2000, help="submit+approve pairs per phase")
    parser.add_argument("--reads", type=int, default=5000, help="inbox reads")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients / workers")
    parser.add_argument("--workers", type=int, default=2, help="server processes")
    parser.add_argument("--rounds", type=int, default=3, help="core then HTTP, this many times")
    args = parser.parse_args()

    name = f"mdstudio_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    server = None
    try:
        engine = create_store_engine(url)
        migrations.upgrade(engine)
        per_client = args.pairs // args.clients
        total = per_client * args.clients
        tenant = uuid.uuid4()

        def bearer(user: str, *roles: str) -> dict:
            identity = Identity(tenant, user, frozenset(roles))
            secret, _ = tokens.create_token(UnitOfWork(engine), identity)
            return {"Authorization": f"Bearer {secret}"}

        pairs = [
            (bearer(f"requester{c}"), bearer(f"approver{c}", "metadata_steward"))
            for c in range(args.clients)
        ]
        server, port = start_server(url, args.workers)
        # Warm up both workers (first requests import and cache what later ones reuse), as the
        # core's workers warm up in their first calls.
        http_phase(server, port, pairs, WARM_UP, "warm")

        # Rounds alternate the two sides so that a noisy minute on the machine falls on both;
        # the ratio reported is the median of the rounds'.
        latencies: Latencies = defaultdict(list)
        cpu: dict[str, Counter[str]] = {"core": Counter(), "http": Counter()}
        rounds: list[tuple[float, float]] = []
        for round_number in range(args.rounds):
            core_wall, core, core_cpu = core_phase(url, uuid.uuid4(), args.clients, per_client)
            http_wall, written, http_cpu = http_phase(
                server, port, pairs, per_client, f"http{round_number}."
            )
            merged(latencies, core)
            merged(latencies, written)
            cpu["core"].update(core_cpu)
            cpu["http"].update(http_cpu)
            rounds.append((total / core_wall, total / http_wall))
        read_wall, read = read_phase(port, pairs[0][1], args.clients, args.reads)
        ok, counts = exactly_once(engine, 2 * total * args.rounds + WARM_UP * args.clients)

        print(
            f"PostgreSQL, {args.clients} concurrent clients; core: {args.clients} worker "
            f"processes calling the services; HTTP: mdstudio serve --workers {args.workers}, "
            f"{args.clients} keep-alive client processes ({os.cpu_count()} cores); "
            f"{args.rounds} rounds of {total} approvals per side"
        )
        print(f"{'route':<32}{'requests':>9}{'p50 ms':>9}{'p99 ms':>9}")
        report(latencies)
        report(read)
        print(
            f"{'CPU ms per approval':<32}{'clients':>9}{'server':>9}{'other':>9}{'all':>9}"
            "   (other: PostgreSQL and the kernel)"
        )
        for side, seconds in cpu.items():
            shares = [seconds["clients"], seconds["server"], seconds["other"]]
            print(
                f"{side:<32}"
                + "".join(
                    f"{1000 * v / (total * args.rounds):>9.2f}" for v in [*shares, sum(shares)]
                )
            )
        print(f"{'round':<32}{'core/s':>9}{'http/s':>9}{'ratio':>9}")
        for number, (core_rate, http_rate) in enumerate(rounds, 1):
            print(f"{number:<32}{core_rate:>9.0f}{http_rate:>9.0f}{http_rate / core_rate:>9.2f}")
        print(f"inbox reads/s: {args.reads / read_wall:.0f}")
        print(f"exactly once: {'yes' if ok else 'NO'} ({counts})")
        ratio = statistics.median(http / core for core, http in rounds)
        print(f"http/core approvals ratio: {ratio:.2f}")
        engine.dispose()
        if not ok:
            raise SystemExit(1)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
