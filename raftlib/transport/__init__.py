"""Transports: how a node's driver exchanges Raft messages with its peers.

``MemoryNetwork`` is the in-process network for tests (seeded delay, loss, duplication,
reordering and partitions); ``TcpTransport`` carries length-prefixed frames over TCP;
``raftlib.transport.codec`` is the wire format both sides of a TCP connection speak.
"""

from raftlib.transport.base import Endpoint as Endpoint
from raftlib.transport.base import Transport as Transport
from raftlib.transport.codec import CodecError as CodecError
from raftlib.transport.codec import FrameDecoder as FrameDecoder
from raftlib.transport.codec import encode_frame as encode_frame
from raftlib.transport.memory import LinkFaults as LinkFaults
from raftlib.transport.memory import MemoryEndpoint as MemoryEndpoint
from raftlib.transport.memory import MemoryNetwork as MemoryNetwork
from raftlib.transport.tcp import PLAINTEXT as PLAINTEXT
from raftlib.transport.tcp import PeerRefused as PeerRefused
from raftlib.transport.tcp import StreamSecurity as StreamSecurity
from raftlib.transport.tcp import TcpEndpoint as TcpEndpoint
from raftlib.transport.tcp import TcpTransport as TcpTransport

__all__ = [
    "PLAINTEXT",
    "CodecError",
    "Endpoint",
    "FrameDecoder",
    "LinkFaults",
    "MemoryEndpoint",
    "MemoryNetwork",
    "PeerRefused",
    "StreamSecurity",
    "TcpEndpoint",
    "TcpTransport",
    "Transport",
    "encode_frame",
]
