"""A small synchronous rtnetlink client: links, addresses and policy rules, with a timeout.

Messages are built and parsed by pyroute2's netlink classes; the socket is a plain blocking
one owned here, one request at a time, each answered within ``REQUEST_SECONDS_MAX`` or an
error. (pyroute2's own ``IPRoute`` runs every request through a private asyncio loop; in live
runs after a killed run it sometimes waited forever for an answer the kernel had sent.)

A client for another namespace gets its socket created inside that namespace
(``netns.socket_inside``), so no process is forked and no ``ip`` binary is run.
"""

from __future__ import annotations

import socket
from typing import Any

from pyroute2.netlink import (
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_EXCL,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
)
from pyroute2.netlink.rtnl import (
    RTM_DELLINK,
    RTM_DELQDISC,
    RTM_DELRULE,
    RTM_GETADDR,
    RTM_GETLINK,
    RTM_GETRULE,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWQDISC,
    RTM_NEWRULE,
    RTM_NEWTFILTER,
)
from pyroute2.netlink.rtnl.fibmsg import fibmsg
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.marshal import MarshalRtnl
from pyroute2.netlink.rtnl.tcmsg import tcmsg

from harness.live import netns

NETLINK_ROUTE = 0
IFF_UP = 1
# fib rule actions (linux/fib_rules.h)
FR_ACT_TO_TBL = 1
FR_ACT_BLACKHOLE = 6
# tc: the clsact qdisc's handle and its ingress hook (linux/pkt_sched.h), a filter for every
# protocol, and the bpf classifier's direct-action flag.
TC_H_CLSACT = 0xFFFFFFF1
TC_H_CLSACT_INGRESS = 0xFFFFFFF2
CLSACT_HANDLE = 0xFFFF0000
ETH_P_ALL_BE = 0x0300
TCA_BPF_FLAG_ACT_DIRECT = 1
# How long the kernel may take to answer one request; bytes read per receive.
REQUEST_SECONDS_MAX = 10.0
RECEIVE_BYTES_MAX = 1 << 20
CREATE = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
CHANGE = NLM_F_REQUEST | NLM_F_ACK
DUMP = NLM_F_REQUEST | NLM_F_DUMP


class NetlinkFailure(RuntimeError):
    """The kernel refused a request (``code`` is the errno) or did not answer in time."""

    def __init__(self, what: str, code: int | None, detail: str) -> None:
        super().__init__(f"netlink {what}: {detail}")
        self.code = code


class Rtnl:
    def __init__(self, namespace: str | None = None) -> None:
        def make() -> socket.socket:
            return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)

        self.namespace = namespace
        self._sock = make() if namespace is None else netns.call_inside(namespace, make)
        self._sock.bind((0, 0))
        self._sock.settimeout(REQUEST_SECONDS_MAX)
        self._seq = 0
        self._marshal = MarshalRtnl()

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, what: str, msg: Any, kind: int, flags: int) -> list[Any]:
        """Send one request; its answer (the messages of a dump, nothing for a change)."""
        self._seq += 1
        seq = self._seq
        msg["header"]["type"] = kind
        msg["header"]["flags"] = flags
        msg["header"]["sequence_number"] = seq
        msg.encode()
        self._sock.send(msg.data)
        found: list[Any] = []
        while True:
            try:
                data = self._sock.recv(RECEIVE_BYTES_MAX)
            except TimeoutError:
                raise NetlinkFailure(what, None, f"no answer within {REQUEST_SECONDS_MAX:g} s "
                                     f"(namespace {self.namespace or 'of the harness'})"
                                     ) from None
            for reply in self._marshal.parse(data):
                header = reply["header"]
                if header["sequence_number"] != seq:
                    continue  # the tail of an earlier request that timed out
                if header["type"] == NLMSG_ERROR:
                    error = header.get("error")
                    if error is not None:
                        raise NetlinkFailure(what, error.code, str(error))
                    return found
                if header["type"] == NLMSG_DONE:
                    return found
                found.append(reply)
            if not flags & NLM_F_DUMP and found:
                return found

    # --- links --------------------------------------------------------------------------------

    def links(self) -> dict[str, int]:
        """Interface name -> index."""
        return {link.get_attr("IFLA_IFNAME"): link["index"]
                for link in self.request("list links", ifinfmsg(), RTM_GETLINK, DUMP)}

    def index(self, name: str) -> int:
        found = self.links().get(name)
        if found is None:
            raise NetlinkFailure(f"find link {name}", None, "no such interface")
        return found

    def add_link(self, name: str, kind: str, peer: str | None = None) -> None:
        info: list[tuple[str, Any]] = [("IFLA_INFO_KIND", kind)]
        if peer is not None:
            info.append(("IFLA_INFO_DATA",
                         {"attrs": [("VETH_INFO_PEER", {"attrs": [("IFLA_IFNAME", peer)]})]}))
        msg = ifinfmsg()
        msg["attrs"] = [("IFLA_IFNAME", name), ("IFLA_LINKINFO", {"attrs": info})]
        self.request(f"add {kind} {name}", msg, RTM_NEWLINK, CREATE)

    def set_link(self, index: int, *, up: bool = False, master: int | None = None,
                 name: str | None = None, netns_fd: int | None = None) -> None:
        msg = ifinfmsg()
        msg["index"] = index
        if up:
            msg["flags"] = IFF_UP
            msg["change"] = IFF_UP
        attrs: list[tuple[str, Any]] = []
        if master is not None:
            attrs.append(("IFLA_MASTER", master))
        if name is not None:
            attrs.append(("IFLA_IFNAME", name))
        if netns_fd is not None:
            attrs.append(("IFLA_NET_NS_FD", netns_fd))
        msg["attrs"] = attrs
        self.request(f"set link {index}", msg, RTM_NEWLINK, CHANGE)

    def delete_link(self, index: int) -> None:
        msg = ifinfmsg()
        msg["index"] = index
        self.request(f"delete link {index}", msg, RTM_DELLINK, CHANGE)

    # --- addresses ----------------------------------------------------------------------------

    def addresses(self) -> list[tuple[int, str]]:
        """(interface index, IPv4 address) of every IPv4 address."""
        msg = ifaddrmsg()
        msg["family"] = socket.AF_INET
        return [(a["index"], a.get_attr("IFA_ADDRESS") or "")
                for a in self.request("list addresses", msg, RTM_GETADDR, DUMP)
                if a["family"] == socket.AF_INET]

    def add_address(self, index: int, address: str, prefixlen: int) -> None:
        msg = ifaddrmsg()
        msg["family"] = socket.AF_INET
        msg["prefixlen"] = prefixlen
        msg["index"] = index
        msg["attrs"] = [("IFA_LOCAL", address), ("IFA_ADDRESS", address)]
        self.request(f"add address {address}", msg, RTM_NEWADDR, CREATE)

    # --- policy rules -------------------------------------------------------------------------

    def rules(self) -> list[Any]:
        msg = fibmsg()
        msg["family"] = socket.AF_INET
        return self.request("list rules", msg, RTM_GETRULE, DUMP)

    @staticmethod
    def _rule(priority: int, action: int, table: int = 0, src: str | None = None,
              iif: str | None = None) -> Any:
        msg = fibmsg()
        msg["family"] = socket.AF_INET
        msg["action"] = action
        msg["table"] = table
        attrs: list[tuple[str, Any]] = [("FRA_PRIORITY", priority)]
        if table:
            attrs.append(("FRA_TABLE", table))
        if src is not None:
            msg["src_len"] = 32
            attrs.append(("FRA_SRC", src))
        if iif is not None:
            attrs.append(("FRA_IIFNAME", iif))
        msg["attrs"] = attrs
        return msg

    def add_rule(self, priority: int, action: int, **match: Any) -> None:
        self.request(f"add rule {priority}", self._rule(priority, action, **match),
                     RTM_NEWRULE, CREATE)

    def delete_rule(self, priority: int, action: int, **match: Any) -> None:
        self.request(f"delete rule {priority}", self._rule(priority, action, **match),
                     RTM_DELRULE, CHANGE)

    # --- traffic control ----------------------------------------------------------------------

    def add_clsact(self, index: int) -> None:
        msg = tcmsg()
        msg["index"] = index
        msg["handle"] = CLSACT_HANDLE
        msg["parent"] = TC_H_CLSACT
        msg["attrs"] = [("TCA_KIND", "clsact")]
        self.request(f"add clsact on link {index}", msg, RTM_NEWQDISC, CREATE)

    def delete_clsact(self, index: int) -> None:
        """Remove the clsact qdisc of link ``index`` and with it every filter on it."""
        msg = tcmsg()
        msg["index"] = index
        msg["handle"] = CLSACT_HANDLE
        msg["parent"] = TC_H_CLSACT
        msg["attrs"] = [("TCA_KIND", "clsact")]
        self.request(f"delete clsact on link {index}", msg, RTM_DELQDISC, CHANGE)

    def add_ingress_bpf(self, index: int, prog_fd: int, name: str, priority: int = 1) -> None:
        """Attach a loaded classifier (direct action) to the ingress of link ``index``."""
        msg = tcmsg()
        msg["index"] = index
        msg["parent"] = TC_H_CLSACT_INGRESS
        msg["info"] = (priority << 16) | ETH_P_ALL_BE
        msg["attrs"] = [("TCA_KIND", "bpf"), ("TCA_OPTIONS", {"attrs": [
            ("TCA_BPF_FD", prog_fd), ("TCA_BPF_NAME", name),
            ("TCA_BPF_FLAGS", TCA_BPF_FLAG_ACT_DIRECT)]})]
        self.request(f"add bpf filter on link {index}", msg, RTM_NEWTFILTER, CREATE)
