"""The daemon's typed vocabulary: run records and their statuses, trigger and error kinds
(with the sentence that explains each), and the run spec a decided run executes.

Everything here is a value: no I/O, no clock, no journal. The scheduler, the executor, the
operator library, the CLI and (through the operator library) the node RPC server all speak
it, so a status or an error kind is spelled once.
"""
