"""raftlib: Raft consensus on Trio."""
