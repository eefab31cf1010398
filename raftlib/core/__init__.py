"""The pure Raft core: a deterministic state machine with no I/O (see ``raft.py``).

Nothing in this package imports trio, sockets, the clock or global randomness; election jitter
comes from the ``Rng`` the caller passes in.
"""

from raftlib.core.config import CoreConfig as CoreConfig
from raftlib.core.config import Rng as Rng
from raftlib.core.progress import ProgressState as ProgressState
from raftlib.core.raft import CoreStatus as CoreStatus
from raftlib.core.raft import ProgressStatus as ProgressStatus
from raftlib.core.raft import RaftCore as RaftCore
from raftlib.core.types import MESSAGE_TYPES as MESSAGE_TYPES
from raftlib.core.types import NO_NODE as NO_NODE
from raftlib.core.types import AppendEntries as AppendEntries
from raftlib.core.types import AppendEntriesResponse as AppendEntriesResponse
from raftlib.core.types import Entry as Entry
from raftlib.core.types import EntryKind as EntryKind
from raftlib.core.types import HardState as HardState
from raftlib.core.types import Message as Message
from raftlib.core.types import NodeId as NodeId
from raftlib.core.types import ReadIndexRequest as ReadIndexRequest
from raftlib.core.types import ReadIndexResponse as ReadIndexResponse
from raftlib.core.types import ReadState as ReadState
from raftlib.core.types import Ready as Ready
from raftlib.core.types import RequestVote as RequestVote
from raftlib.core.types import RequestVoteResponse as RequestVoteResponse
from raftlib.core.types import Role as Role
from raftlib.core.types import SoftState as SoftState
from raftlib.core.types import TimeoutNow as TimeoutNow
