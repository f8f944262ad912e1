"""RESP codec: bytes in -> commands out; replies -> bytes. Sans-I/O."""
