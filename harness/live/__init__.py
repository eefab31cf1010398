"""The live backend: real ``raftlib serve`` processes on real TCP, real faults, same checks.

``raft-harness run --backend live`` starts one ``python -m raftlib.cli serve`` process per node
(data directories and logs inside the run directory), drives them over their RESP client ports
with concurrent ``raftlib.client`` sessions (a retried write applies exactly once), injects the
nemesis schedule into the real processes and network, heals, and then checks:

- ``linearizable``: lincheck on the recorded history (per key for kv and append);
- ``safety``: Raft's invariants read back from the nodes' own write-ahead logs after a graceful
  stop (log matching, committed prefixes identical), plus at most one leader per term among the
  leaders the harness saw while polling ``INFO``;
- ``durability``: every write acknowledged to a client is in every node's log, at an index the
  cluster committed, identified by its exact (session, seq, operation);
- ``liveness``: after the final heal a probe write and final reads complete and every node
  applies up to the leader's commit index within ``--recovery-time``, else "no progress after
  heal";
- ``processes``: no node process exited on its own (a crash of the system under test).

Faults supported live (``LIVE_NEMESES``; ``--nemesis all`` means all of these that this
machine allows): ``partition`` (real packet drops or the proxy fallback, see below), ``kill``
(a process crash: SIGKILL, restart at the window's end; what the node wrote survives, synced
or not), ``pause`` (SIGSTOP / SIGCONT), ``loss`` (namespaces only: an eBPF classifier on each
node's ingress drops every IPv4 packet from a peer with the fault's probability, see
``loss``; TCP retransmits, so nodes see delays where the simulator's nodes see lost
messages), ``delay`` (a userspace delay line in per-link relays, see ``shaper``: chunks, not
packets, weaker than netem), ``clock`` (each node's Trio clock, which times its ticks,
election timeouts, leases, request timeouts and the leader time stamped into writes for
session expiry, runs at the fault's rate, and its wall clock, which a leader never stamps
(only a new cluster's first leader reads it), is bumped or strobed; see
``clocked``), ``disk`` (a power loss: in a run with disk faults every node runs under
``lazyfs``, a file layer in the node process that holds unsynced writes in memory until
fsync, so killing the node loses them, or tears the newest; a disk window may also damage
the node's newest WAL segment or snapshot before it restarts, see ``filefaults``). The others
are refused with a one-line reason: ``duplicate`` and ``reorder`` are absorbed by TCP and
this kernel has no netem below it; the crash triggers watch messages only the simulator
sees. ``--bug NAME`` switches a zoo bug on inside every node (``harness.zoo.live``).

A run stopped by Ctrl-C or SIGTERM heals everything (namespaces removed, node processes
stopped), writes ``results.json`` with verdict ``interrupted``, prints one line and exits
130. A harness killed outright leaves its nodes and namespaces; the next run removes them
first (``ledger``: one file per running harness naming its node processes) and says so in
one line.

How partitions are made (recorded in results.json as ``live.partitions`` and in the verdict):

- ``netns`` (root on Linux): each node runs in its own network namespace ``rh-nN`` with a veth
  into the bridge ``rh-br0``; node N has 10.77.0.N, the harness 10.77.0.254 on the bridge.
  All of it is made through netlink from Python (pyroute2) and nodes enter their namespace
  through ``python -m harness.live.nsexec``, so no ``ip``, ``nft`` or ``iptables`` binary is
  needed. These addresses exist only in what the run creates, so no test traffic leaves the
  machine. A blocked link ``[src, dst]`` is a policy-routing rule in dst's namespace that
  blackholes every packet from src, ahead of local delivery: the kernel drops the packets and
  answers nothing, so the peers see silence, not errors, as with Jepsen's packet filters on
  real hosts. The node's client port listens on 127.0.0.1 inside its namespace; the harness
  reaches it through a relay whose far end is a socket created in that namespace (client
  traffic is never cut). Leftovers of a crashed run (``rh-*``) are removed at start,
  everything is removed in ``finally``; a lock file keeps one such run per machine at a time.
- ``proxy (weaker)`` (not root, no namespaces, or ``RAFT_HARNESS_PARTITIONS=proxy``): every
  node listens on 127.0.0.1 and reaches each peer through a TCP proxy in the harness, one per
  directed link. Blocking a link closes its connections and holds new ones without forwarding
  a byte. Weaker than packet filtering: the sender sees its connection close (an error) before
  the silence, and the client path is never cut.

``RAFT_HARNESS_PARTITIONS=auto|netns|proxy`` picks the method (default ``auto``: namespaces
when possible). Namespace runs take the machine lock ``/run/raft-harness-live.lock``, so the
seeds of ``raft-harness campaign --backend live`` run one after another whatever ``--jobs``.

``raft-harness replay DIR`` of a live run applies the saved schedule to new processes; the
history is new (real time, real scheduling) and is not compared with the original.
"""
