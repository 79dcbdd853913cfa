"""The wire contract between the daemon and paired nodes: the ``.proto`` files and the gRPC
stubs generated from them.

A package of its own because both sides import it and neither may import the other: the
daemon (``palyrad.services.node_rpc``) serves it, the device client (``node``) calls it, and
the layering test (tests/test_layering.py) keeps ``node`` from ever importing ``palyrad``.
It imports only the standard library, ``grpc`` and ``google.protobuf``. The stubs are
committed next to their ``.proto`` and a test regenerates them to prove they match.
"""
