"""The daemon's typed vocabulary: run records and their statuses, trigger and error kinds
(with the sentence that explains each), and the run spec a decided run executes.

Everything here is a value: no I/O, no clock, no journal (one exception: ``learning`` streams
a run's log for the ``::palyra-learn`` lines it defines, so the format and its reader stay
in one place). The scheduler, the executor, the
operator library, the CLI and (through the operator library) the node RPC server all speak
it, so a status or an error kind is spelled once.
"""
