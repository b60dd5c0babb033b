"""What we know: views folded from the log, and the audit.

Imports only `events` (ARCHITECTURE.md): views read envelopes — wire type names and
payload dicts — never the deciders' classes, so an auditor's replay does not depend on
the code that wrote the log.
"""
