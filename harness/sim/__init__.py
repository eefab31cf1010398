"""The deterministic simulation backend: a discrete-event simulator on virtual time that
drives real ``RaftCore``s through a driver honouring the Ready contract (``node.py``)."""
