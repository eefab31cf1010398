"""RESP2: the Redis wire protocol (parser, serializer) and a Trio server for it."""

from raftlib.resp.limits import ServerLimits as ServerLimits
from raftlib.resp.protocol import OK as OK
from raftlib.resp.protocol import ErrorReply as ErrorReply
from raftlib.resp.protocol import Reply as Reply
from raftlib.resp.protocol import RespLimits as RespLimits
from raftlib.resp.protocol import RespParser as RespParser
from raftlib.resp.protocol import RespProtocolError as RespProtocolError
from raftlib.resp.protocol import SimpleString as SimpleString
from raftlib.resp.protocol import encode as encode
from raftlib.resp.protocol import encode_command as encode_command
from raftlib.resp.server import RespServer as RespServer

__all__ = [
    "OK",
    "ErrorReply",
    "Reply",
    "RespLimits",
    "RespParser",
    "RespProtocolError",
    "RespServer",
    "ServerLimits",
    "SimpleString",
    "encode",
    "encode_command",
]
