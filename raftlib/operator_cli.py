"""The operator's subcommands of ``raftlib``, against a running KV cluster's client port:

    raftlib member list      --address HOST:PORT
    raftlib member add ID RAFT_HOST:PORT [--client HOST:PORT] [--learner] --address HOST:PORT
    raftlib member remove ID --address HOST:PORT
    raftlib member promote ID --address HOST:PORT
    raftlib transfer-leader [ID] --address HOST:PORT
    raftlib status           --address HOST:PORT

Each sends one ``RAFT.*`` command (``raftlib.admin``) to ``--address`` and follows ``-MOVED``
to the leader; ``-TRYAGAIN`` (an election, another change under way) is retried with a
backoff. With TLS on the cluster's client port, give ``--tls-dir DIR`` (the ``certs init``
layout: ``ca.pem``, ``client.pem``/``client.key``) or ``--cacert`` (and ``--cert``/``--key``
when the port requires client certificates). Exit status: 0 done, 1 refused or unreachable
(one line saying why), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Final, TypeVar

import trio

from raftlib.client import NotDelivered, TcpConnector
from raftlib.resp.protocol import ErrorReply, Reply

# -MOVED redirects followed before giving up (a leader changing under the request), and
# -TRYAGAIN answers retried, this far apart.
REDIRECTS_MAX: Final = 5
TRYAGAIN_ATTEMPTS_MAX: Final = 40
TRYAGAIN_BACKOFF_SECONDS: Final = 0.25
# A member add waits for the learner to catch up (the node's bound is 30 s); the rest is quick.
TIMEOUT_SECONDS_DEFAULT: Final = 60.0
CONNECT_TIMEOUT_SECONDS: Final = 2.0

EXIT_REFUSED: Final = 1

P = TypeVar("P", bound=argparse.ArgumentParser)


class OperatorError(Exception):
    """The cluster refused or could not be reached; one line."""


def add_operator_commands(sub: argparse._SubParsersAction[P], parser_class: type[P]) -> None:
    member = sub.add_parser("member", help="list or change a running cluster's members")
    member_sub = member.add_subparsers(dest="member_command", required=True,
                                       parser_class=parser_class)
    _connection(member_sub.add_parser("list", help="members: id, role, raft and client address"))
    add = member_sub.add_parser(
        "add", help="add a member: a learner, promoted to voter once caught up")
    add.add_argument("id", type=int, help="the new member's id (never one used before)")
    add.add_argument("raft_address", help="where peers reach it: HOST:PORT")
    add.add_argument("--client", default=None, metavar="HOST:PORT",
                     help="where clients reach it (for redirects to it when it leads)")
    add.add_argument("--learner", action="store_true", help="add it as a learner only")
    _connection(add)
    for name, text in (("remove", "remove a member (a voter or a learner)"),
                       ("promote", "make a learner a voter once caught up")):
        change = member_sub.add_parser(name, help=text)
        change.add_argument("id", type=int, help="the member's id")
        _connection(change)
    transfer = sub.add_parser("transfer-leader", help="hand leadership to another voter")
    transfer.add_argument("id", type=int, nargs="?", default=None,
                          help="the voter to lead (default: the most caught-up one)")
    _connection(transfer)
    _connection(sub.add_parser(
        "status", help="the Raft status of the node at --address (a leader's shows each "
                       "follower's match index, lag and last contact)"))


def _connection(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("connection")
    group.add_argument("--address", required=True, metavar="HOST:PORT",
                       help="a node's client (RESP) address; -MOVED is followed to the leader")
    group.add_argument("--timeout", type=float, default=TIMEOUT_SECONDS_DEFAULT,
                       help=f"seconds to wait for the answer (default {TIMEOUT_SECONDS_DEFAULT:g})")
    group.add_argument("--tls-dir", default=None,
                       help="client TLS in the `raftlib certs init` layout (ca.pem, client.pem)")
    group.add_argument("--cacert", default=None, help="CA of the client port's certificate")
    group.add_argument("--cert", default=None, help="client certificate (with --key)")
    group.add_argument("--key", default=None, help="client private key")


def operator_command(args: argparse.Namespace) -> list[bytes] | None:
    """The RAFT.* command ``args`` asks for, or None when it is not an operator command.
    Raises ``ValueError`` (one line) for bad arguments."""
    if args.command == "status":
        return [b"RAFT.STATUS"]
    if args.command == "transfer-leader":
        _check_id(args.id, allow_none=True)
        return [b"RAFT.TRANSFER"] + ([] if args.id is None else [b"%d" % args.id])
    if args.command != "member":
        return None
    sub = args.member_command
    if sub == "list":
        return [b"RAFT.MEMBERS"]
    _check_id(args.id)
    if sub == "add":
        command = [b"RAFT.ADD", b"%d" % args.id, _host_port(args.raft_address, "RAFT_ADDRESS")]
        if args.client is not None:
            command.append(_host_port(args.client, "--client"))
        if args.learner:
            command.append(b"LEARNER")
        return command
    return [b"RAFT." + sub.upper().encode(), b"%d" % args.id]


def _check_id(node_id: int | None, *, allow_none: bool = False) -> None:
    if node_id is None and allow_none:
        return
    if node_id is None or node_id < 1:
        raise ValueError(f"ID must be an integer >= 1, got {node_id}")


def _host_port(text: str, what: str) -> bytes:
    from raftlib.transport.tcp import parse_host_port

    if "," in text or parse_host_port(text) is None:
        raise ValueError(f"{what} must be HOST:PORT, got {text!r}")
    return text.encode()


def _ssl_context(args: argparse.Namespace) -> object | None:
    from raftlib.transport.tls import client_context

    if args.tls_dir is not None:
        if args.cacert or args.cert or args.key:
            raise ValueError("use either --tls-dir or --cacert/--cert/--key, not both")
        tls = Path(args.tls_dir)
        cert, key = tls / "client.pem", tls / "client.key"
        has_client = cert.exists() and key.exists()
        return client_context(tls / "ca.pem", cert=cert if has_client else None,
                              key=key if has_client else None)
    if (args.cert or args.key) and not args.cacert:
        raise ValueError("--cert/--key need --cacert")
    if args.cacert:
        return client_context(Path(args.cacert),
                              cert=Path(args.cert) if args.cert else None,
                              key=Path(args.key) if args.key else None)
    return None


async def call_leader(connector: TcpConnector, address: str, command: list[bytes]) -> Reply:
    """Send ``command`` to ``address``, following -MOVED and retrying -TRYAGAIN (bounded). A
    leader named by -MOVED that refuses the connection (it just died) sends us back to
    ``address`` after a backoff, as -TRYAGAIN would: the survivors elect another."""
    redirects = tryagains = 0
    first = address
    while True:
        try:
            reply = await connector.call(address, command)
        except NotDelivered as exc:
            # Nothing was sent: safe to ask again.
            if address != first and tryagains < TRYAGAIN_ATTEMPTS_MAX:
                tryagains += 1
                address = first
                await trio.sleep(TRYAGAIN_BACKOFF_SECONDS)
                continue
            raise OperatorError(str(exc)) from None
        except OSError as exc:  # the connection broke after the request was sent
            raise OperatorError(str(exc)) from None
        if not isinstance(reply, ErrorReply):
            return reply
        code, _, rest = reply.text.partition(" ")
        if code == "MOVED" and redirects < REDIRECTS_MAX:
            redirects += 1
            address = rest.split()[-1]
            continue
        if code == "TRYAGAIN" and tryagains < TRYAGAIN_ATTEMPTS_MAX:
            tryagains += 1
            await trio.sleep(TRYAGAIN_BACKOFF_SECONDS)
            continue
        raise OperatorError(f"{address}: {reply.text}")


def render(args: argparse.Namespace, reply: Reply) -> str:
    """What the command prints on success."""
    if args.command == "status":
        return reply.decode() if isinstance(reply, bytes) else str(reply)
    if args.command == "transfer-leader":
        assert isinstance(reply, int)
        return f"node {reply} leads"
    sub = args.member_command
    if sub == "list":
        assert isinstance(reply, list)
        lines = [f"{'ID':>4}  {'ROLE':<9} {'RAFT':<22} CLIENT"]
        for row in reply:
            assert isinstance(row, list) and len(row) == 4
            node, role, raft, client = row
            assert isinstance(node, int) and isinstance(role, bytes) and isinstance(raft, bytes)
            assert isinstance(client, bytes)
            lines.append(f"{node:>4}  {role.decode():<9} {raft.decode():<22} "
                         f"{client.decode() or '-'}")
        return "\n".join(lines)
    done = {"add": "added as a learner" if getattr(args, "learner", False) else
            "added as a voter", "remove": "removed", "promote": "promoted to voter"}[sub]
    return f"node {args.id} {done}"


async def _run(args: argparse.Namespace, command: list[bytes], ssl_context: object) -> Reply:
    import ssl

    assert ssl_context is None or isinstance(ssl_context, ssl.SSLContext)
    connector = TcpConnector(connect_timeout_seconds=CONNECT_TIMEOUT_SECONDS,
                             ssl_context=ssl_context)
    try:
        with trio.fail_after(args.timeout):
            return await call_leader(connector, args.address, command)
    except OperatorError as exc:
        if ssl_context is None and "closed the connection" in str(exc):
            # What a TLS port does to a plain-text request.
            raise OperatorError(f"{exc} (if the cluster uses TLS, pass --tls-dir or "
                                "--cacert)") from None
        raise
    except trio.TooSlowError:
        raise OperatorError(f"no answer within {args.timeout:g} s (--timeout); a change may "
                            "still take effect: check with `raftlib member list`") from None
    finally:
        with trio.CancelScope(shield=True):
            await connector.aclose()


def operator_main(args: argparse.Namespace, command: list[bytes]) -> int:
    """Run one operator command; prints its result, or one line on stderr."""
    try:
        _host_port(args.address, "--address")
        if not args.timeout > 0:
            raise ValueError(f"--timeout must be > 0 seconds, got {args.timeout}")
        ssl_context = _ssl_context(args)
    except (ValueError, OSError) as exc:
        print(f"raftlib: error: {exc}", file=sys.stderr)
        return 2
    try:
        reply = trio.run(_run, args, command, ssl_context)
    except OperatorError as exc:
        print(f"raftlib: error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    print(render(args, reply), flush=True)
    return 0
