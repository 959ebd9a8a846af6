"""A TCP proxy that lets ``redshift_connector`` talk to a stock PostgreSQL.

The driver fails against PostgreSQL in exactly two places, both in the
connection handshake:

* its StartupMessage carries parameters PostgreSQL rejects as unrecognized
  configuration parameters (``client_protocol_version``, ``driver_version``,
  ``os_version``, ``driver_discovery_version``, and with some plugins
  ``plugin_name``, ``idp_type``, ``provider_name``, ...);
* it parses the server's ``server_version`` ParameterStatus with
  ``packaging.version`` and fails on Debian's ``15.18 (Debian ...)``.

So the shim rewrites only the handshake: it forwards the startup parameters
PostgreSQL knows (dropping and reporting the others), answers ``N`` to an
SSLRequest or GSSENCRequest (no TLS: connect with ``REDSHIFT_SSL=false``;
with TLS on, the driver reports "Server refuses SSL") unless it was started
with a certificate (``--tls-cert``/``--tls-key``; :func:`make_test_certificates`
writes a throw-away CA and a server certificate), and reports ``server_version``
as Redshift does (``8.0.2``). After the server's first ReadyForQuery it
copies bytes both ways untouched, so it costs next to nothing (a proxy that
parses every message slows even psql 5x).

Run it in its own process so it never competes with the client for the GIL::

    python tests/support/redshift_shim.py --upstream-port 5432 [--port 0]

It prints ``LISTENING <port>`` once ready. SIGUSR1 drops every proxied
connection abruptly (both sides get a reset, as when a server dies or the
network breaks) and prints ``DROPPED <n>``; SIGTERM stops it. In-process use:
:class:`Shim`; from tests and benchmarks: :class:`ShimProcess`.

Redshift's documented limits can be switched on per shim process
(``--single-node``, ``--cursor-cap-rows N``, ``--unload ...``; see
redshift_limits.py). They are EMULATIONS of documented behaviour, not
Redshift. With any of them on, the shim reads the client's messages (never
the server's rows) and rewrites the few statements concerned; with none on,
it copies bytes as before.

With a certificate, the shim answers ``S`` and speaks TLS to the client; one
thread per connection moves bytes between the TLS socket and a local socket
pair, so the SSL object is only ever used by that thread.

Standard library only (the UNLOAD emulation imports pyarrow and boto3 when
used; :func:`make_test_certificates` imports cryptography).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102
PROTOCOL_3 = 196608

# Startup parameters PostgreSQL accepts (GUCs a client may set at connection
# time, plus the protocol's own keys); everything else the driver sends is
# Redshift-only and is dropped. Compared case-insensitively; custom "a.b"
# settings pass too.
PG_STARTUP_KEYS = frozenset(
    {
        "user",
        "database",
        "options",
        "replication",
        "application_name",
        "client_encoding",
        "datestyle",
        "timezone",
        "search_path",
        "extra_float_digits",
        "intervalstyle",
        "standard_conforming_strings",
        "statement_timeout",
        "lock_timeout",
        "idle_in_transaction_session_timeout",
        "default_transaction_read_only",
        "geqo",
        "lc_messages",
    }
)
BUFSIZE = 256 * 1024


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks = []
    while n:
        chunk = sock.recv(n)
        if not chunk:
            raise ConnectionError("peer closed during handshake")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def rewrite_startup(body: bytes, extra: dict[str, str] | None = None) -> tuple[bytes, list[str]]:
    """A StartupMessage (without its length) minus the parameters PG rejects.

    ``extra`` settings are added (an emulation's session settings). Returns
    the whole new message (with length) and the dropped names.
    """
    protocol, rest = body[:4], body[4:]
    parts = rest.split(b"\x00")
    kept = bytearray(protocol)
    dropped = []
    for i in range(0, len(parts) - 1, 2):
        key = parts[i]
        if not key:
            break
        value = parts[i + 1]
        name = key.decode("utf-8", "replace")
        if name.lower() in PG_STARTUP_KEYS or "." in name:
            kept += key + b"\x00" + value + b"\x00"
        else:
            dropped.append(name)
    for key, value in (extra or {}).items():
        kept += key.encode() + b"\x00" + value.encode() + b"\x00"
    kept += b"\x00"
    return struct.pack("!I", len(kept) + 4) + bytes(kept), dropped


def parameter_status(key: bytes, value: bytes) -> bytes:
    body = key + b"\x00" + value + b"\x00"
    return b"S" + struct.pack("!I", len(body) + 4) + body


def _pump_rewriting(src: socket.socket, dst: socket.socket, rewrite, log) -> None:
    """Copy the client's messages, letting ``rewrite`` replace Parse and Query SQL.

    ``rewrite(sql, nparams)`` returns the replacement SQL or None. Only the
    client-to-server direction is parsed; the server's replies (the rows)
    are still copied untouched.
    """
    buf = bytearray()
    try:
        while True:
            chunk = src.recv(BUFSIZE)
            if not chunk:
                break
            buf += chunk
            out = bytearray()
            pos = 0
            while len(buf) - pos >= 5:
                kind = buf[pos : pos + 1]
                (length,) = struct.unpack("!I", buf[pos + 1 : pos + 5])
                end = pos + 1 + length
                if len(buf) < end:
                    break
                message = bytes(buf[pos:end])
                if kind in (b"P", b"Q"):
                    message = _rewritten(kind, message, rewrite, log)
                out += message
                pos = end
            del buf[:pos]
            if out:
                dst.sendall(out)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


def _rewritten(kind: bytes, message: bytes, rewrite, log) -> bytes:
    body = message[5:]
    if kind == b"P":
        name, _, rest = body.partition(b"\x00")
        sql_bytes, _, params = rest.partition(b"\x00")
        nparams = struct.unpack("!H", params[:2])[0] if len(params) >= 2 else 0
    else:
        name, params, nparams = b"", b"", 0
        sql_bytes = body.rstrip(b"\x00")
    sql = sql_bytes.decode("utf-8", "replace")
    try:
        new = rewrite(sql, nparams)
    except Exception as err:  # an emulation bug must show, not hang the client
        log(f"rewrite failed: {type(err).__name__}: {err}")
        new = None
    if new is None:
        return message
    if kind == b"P":
        new_body = name + b"\x00" + new.encode() + b"\x00" + params
    else:
        new_body = new.encode() + b"\x00"
    return kind + struct.pack("!I", len(new_body) + 4) + new_body


def _hard_close(sock: socket.socket) -> None:
    """Close with a reset (SO_LINGER 0), waking any thread blocked on it."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    """Copy bytes until EOF, untouched."""
    buf = bytearray(BUFSIZE)
    view = memoryview(buf)
    try:
        while True:
            n = src.recv_into(buf)
            if not n:
                break
            dst.sendall(view[:n])
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


def make_test_certificates(
    folder: Path, names: tuple[str, ...] = ("localhost",)
) -> dict[str, Path]:
    """A throw-away CA, a server certificate it signed for ``names``, and an unrelated CA.

    Returns paths: ``ca`` (PEM), ``cert`` and ``key`` (the server's), ``other_ca``.
    """
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)

    def name(text: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    def ca(label: str):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name(label))
            .issuer_name(name(label))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        return key, cert

    ca_key, ca_cert = ca("lead-recovery test CA")
    _, other_cert = ca("an unrelated test CA")
    server_key = ec.generate_private_key(ec.SECP256R1())
    alt_names: list[x509.GeneralName] = []
    for item in names:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(item)))
        except ValueError:
            alt_names.append(x509.DNSName(item))
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(name(names[0]))
        .issuer_name(ca_cert.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    paths = {
        "ca": folder / "ca.pem",
        "cert": folder / "server.pem",
        "key": folder / "server.key",
        "other_ca": folder / "other-ca.pem",
    }
    paths["ca"].write_bytes(ca_cert.public_bytes(pem))
    paths["other_ca"].write_bytes(other_cert.public_bytes(pem))
    paths["cert"].write_bytes(server_cert.public_bytes(pem))
    paths["key"].write_bytes(
        server_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


def _tls_bridge(tls: ssl.SSLSocket, plain: socket.socket) -> None:
    """Move bytes between a TLS socket and a plain one, from this one thread only."""
    try:
        while True:
            ready = [tls] if tls.pending() else select.select([tls, plain], [], [])[0]
            for sock in ready:
                other = plain if sock is tls else tls
                try:
                    data = sock.recv(BUFSIZE)
                except ssl.SSLWantReadError:
                    continue
                if not data:
                    return
                other.sendall(data)
    except (OSError, ValueError):
        pass
    finally:
        for sock in (tls, plain):
            _hard_close(sock)


class Shim:
    """The proxy; ``start()`` serves from a daemon thread, ``serve_forever()`` in place."""

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        server_version: str = "8.0.2",
        log=None,
        limits=None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
    ) -> None:
        self.limits = limits if limits is not None and limits.active else None
        self.tls: ssl.SSLContext | None = None
        if tls_cert:
            self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls.load_cert_chain(tls_cert, tls_key)
        self.upstream = (upstream_host, upstream_port)
        self.server_version = server_version.encode()
        self._log = log
        self._listener = socket.create_server((host, port), reuse_port=False, backlog=128)
        self.host, self.port = self._listener.getsockname()[:2]
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._closing = False
        self.connections = 0

    def log(self, message: str) -> None:
        if self._log is not None:
            print(f"shim: {message}", file=self._log, flush=True)

    # -- lifecycle ----------------------------------------------------------
    def start(self) -> Shim:
        threading.Thread(target=self.serve_forever, name="shim-accept", daemon=True).start()
        return self

    def serve_forever(self) -> None:
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                if self._closing:
                    return
                continue
            self.connections += 1
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def stop(self) -> None:
        self._closing = True
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self.drop_connections()

    def drop_connections(self) -> int:
        """Reset every proxied connection, both sides; returns how many sockets."""
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for sock in conns:
            _hard_close(sock)
        return len(conns)

    def _track(self, *socks: socket.socket) -> None:
        with self._lock:
            self._conns.update(socks)

    def _untrack(self, *socks: socket.socket) -> None:
        with self._lock:
            self._conns.difference_update(socks)

    # -- one connection -----------------------------------------------------
    def _handle(self, client: socket.socket) -> None:
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        upstream = None
        self._track(client)
        try:
            while True:
                (length,) = struct.unpack("!I", _recv_exact(client, 4))
                body = _recv_exact(client, length - 4)
                (code,) = struct.unpack("!I", body[:4])
                if code == SSL_REQUEST and self.tls is not None:
                    client.sendall(b"S")
                    wrapped = self.tls.wrap_socket(client, server_side=True)
                    inner, client = socket.socketpair()
                    self._track(wrapped, inner, client)
                    threading.Thread(target=_tls_bridge, args=(wrapped, inner), daemon=True).start()
                    continue
                if code in (SSL_REQUEST, GSSENC_REQUEST):
                    client.sendall(b"N")  # no TLS/GSS here; the client goes on in plaintext
                    continue
                if code == CANCEL_REQUEST:
                    with socket.create_connection(self.upstream) as cancel:
                        cancel.sendall(struct.pack("!I", length) + body)
                    return
                if code != PROTOCOL_3:
                    self.log(f"unsupported startup code {code}; closing")
                    return
                extra = self.limits.startup_settings if self.limits is not None else None
                startup, dropped = rewrite_startup(body, extra)
                break
            if dropped:
                self.log(f"dropped startup parameters: {', '.join(dropped)}")
            upstream = socket.create_connection(self.upstream)
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._track(upstream)
            upstream.sendall(startup)
            if self.limits is not None:
                limits = self.limits

                def rewrite(sql: str, nparams: int):
                    return limits.rewrite(sql, nparams, log=self.log)

                forward = threading.Thread(
                    target=_pump_rewriting, args=(client, upstream, rewrite, self.log), daemon=True
                )
            else:
                forward = threading.Thread(target=_pump, args=(client, upstream), daemon=True)
            forward.start()
            self._server_handshake(upstream, client)
            _pump(upstream, client)
            forward.join()
        except (OSError, ConnectionError, struct.error):
            pass
        finally:
            socks = (client, upstream) if upstream is not None else (client,)
            self._untrack(*socks)
            for sock in socks:
                with contextlib.suppress(OSError):
                    sock.close()

    def _server_handshake(self, upstream: socket.socket, client: socket.socket) -> None:
        """Relay server messages up to the first ReadyForQuery, fixing server_version."""
        buf = bytearray()
        while True:
            chunk = upstream.recv(BUFSIZE)
            if not chunk:
                if buf:
                    client.sendall(buf)
                return
            buf += chunk
            out = bytearray()
            pos = 0
            done = False
            while len(buf) - pos >= 5:
                kind = buf[pos : pos + 1]
                (length,) = struct.unpack("!I", buf[pos + 1 : pos + 5])
                end = pos + 1 + length
                if len(buf) < end:
                    break
                message = bytes(buf[pos:end])
                if kind == b"S":
                    key, _, _ = message[5:].partition(b"\x00")
                    if key == b"server_version":
                        message = parameter_status(key, self.server_version)
                out += message
                pos = end
                if kind == b"Z":
                    done = True
                    break
            if done:
                out += buf[pos:]  # whatever followed arrives untouched
                client.sendall(out)
                return
            del buf[:pos]
            if out:
                client.sendall(out)


def stop_process(proc: subprocess.Popen) -> None:
    """Stop a test server process: SIGTERM, then SIGKILL after 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class ShimProcess:
    """The shim in its own Python process, controlled by signals."""

    def __init__(
        self,
        upstream_port: int,
        *,
        upstream_host: str = "127.0.0.1",
        log_path=None,
        limits=None,
        env: dict[str, str] | None = None,
        tls: tuple[str, str] | None = None,
    ):
        """``limits``: a redshift_limits.Limits (emulations to switch on); ``env``: the
        process environment (e.g. AWS_ENDPOINT_URL for the UNLOAD emulation); ``tls``:
        (certificate, key) files to speak TLS with."""
        self.log_path = Path(log_path) if log_path else None
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--upstream-host",
            upstream_host,
            "--upstream-port",
            str(upstream_port),
            *(limits.args() if limits is not None else []),
            *(["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])] if tls else []),
        ]
        stderr = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self._proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        if stderr is not subprocess.DEVNULL:
            stderr.close()
        line = self._proc.stdout.readline()
        if not line.startswith("LISTENING "):
            self._proc.kill()
            raise RuntimeError(f"shim did not start: {line!r}")
        self.host = "127.0.0.1"
        self.port = int(line.split()[1])
        self.pid = self._proc.pid

    def drop_connections(self, timeout: float = 10) -> int:
        """Reset every proxied connection now; returns how many sockets were reset."""
        self._proc.send_signal(signal.SIGUSR1)
        ready, _, _ = select.select([self._proc.stdout], [], [], timeout)
        if not ready:
            raise TimeoutError("shim did not confirm the drop")
        line = self._proc.stdout.readline()
        return int(line.split()[1])

    def stop(self) -> None:
        stop_process(self._proc)
        self._proc.stdout.close()

    def __enter__(self) -> ShimProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream-host", default="127.0.0.1")
    parser.add_argument("--upstream-port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--server-version", default="8.0.2")
    parser.add_argument("--tls-cert", help="PEM certificate: answer SSLRequest and speak TLS")
    parser.add_argument("--tls-key", help="the certificate's PEM private key")
    emulations = parser.add_argument_group("Redshift limits (emulations; see redshift_limits.py)")
    emulations.add_argument("--single-node", action="store_true")
    emulations.add_argument("--cursor-cap-rows", type=int)
    emulations.add_argument("--cursor-cap-bytes", type=int)
    emulations.add_argument("--cursor-cap-label", default="8000MB")
    emulations.add_argument("--unload", action="store_true")
    emulations.add_argument("--unload-psql")
    emulations.add_argument("--unload-conninfo")
    emulations.add_argument("--unload-slices", type=int, default=2)
    emulations.add_argument("--redshift-strings", action="store_true")
    args = parser.parse_args(argv)
    limits = None
    if (
        args.single_node
        or args.cursor_cap_rows is not None
        or args.unload
        or (args.cursor_cap_bytes is not None)
        or args.redshift_strings
    ):
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from redshift_limits import Limits

        limits = Limits(
            single_node=args.single_node,
            cursor_cap_rows=args.cursor_cap_rows,
            cursor_cap_bytes=args.cursor_cap_bytes,
            cursor_cap_label=args.cursor_cap_label,
            unload=args.unload,
            unload_psql=args.unload_psql,
            unload_conninfo=args.unload_conninfo,
            unload_slices=args.unload_slices,
            redshift_strings=args.redshift_strings,
        )
    shim = Shim(
        args.upstream_host,
        args.upstream_port,
        host=args.host,
        port=args.port,
        server_version=args.server_version,
        log=sys.stderr,
        limits=limits,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
    )

    def on_usr1(signum, frame):
        n = shim.drop_connections()
        shim.log(f"dropped {n} sockets on request")
        print(f"DROPPED {n}", flush=True)

    def on_term(signum, frame):
        shim.stop()
        sys.stderr.flush()
        os._exit(0)

    signal.signal(signal.SIGUSR1, on_usr1)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    print(f"LISTENING {shim.port}", flush=True)
    shim.serve_forever()
    return 0


if __name__ == "__main__":
    # A dying parent must not leave the shim behind: exit when stdin's pipe
    # (if any) closes is not reliable here, so poll the parent instead.
    parent = os.getppid()

    def _watch_parent() -> None:
        while True:
            time.sleep(1)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=_watch_parent, daemon=True).start()
    raise SystemExit(main())
