"""The journal's schema: one numbered, forward-only list of migrations.

Migration *n* is ``MIGRATIONS[n - 1]``; ``schema_migrations`` records which ran, and
``JournalConnection.migrate`` applies the missing ones in one write transaction. Journals in
the field have run every script below, so an existing one is never edited: a change is a new
entry appended at the end (``MIGRATIONS += (...)``), which also moves ``SCHEMA_VERSION``. A
new domain's tables (tasks, incidents, devices, skills, memory) arrive the same way.

The scripts are split on ``;`` and run statement by statement (no ``executescript``: it
commits the open transaction), so a script holds no ``;`` inside a statement.
"""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # 1: the first schema
    """
    CREATE TABLE routine_state (
        routine_id TEXT PRIMARY KEY,
        definition_hash TEXT NOT NULL,
        schedule_key TEXT,
        enabled INTEGER NOT NULL,
        first_seen_ms INTEGER NOT NULL,
        next_nominal_ms INTEGER,
        next_fire_ms INTEGER,
        last_nominal_ms INTEGER,
        updated_ms INTEGER NOT NULL
    );
    CREATE INDEX routine_state_due ON routine_state(next_fire_ms)
        WHERE enabled = 1 AND next_fire_ms IS NOT NULL;

    CREATE TABLE runs (
        run_id TEXT PRIMARY KEY,
        chain_id TEXT NOT NULL,
        routine_id TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        trigger_kind TEXT NOT NULL,
        status TEXT NOT NULL,
        queued_at_ms INTEGER NOT NULL,
        trigger_payload TEXT,
        scheduled_for_ms INTEGER,
        fire_at_ms INTEGER,
        not_before_ms INTEGER,
        started_at_ms INTEGER,
        finished_at_ms INTEGER,
        exit_code INTEGER,
        error_kind TEXT,
        error_message TEXT,
        output_tail TEXT,
        log_path TEXT,
        definition_hash TEXT,
        missed_count INTEGER,
        first_missed_ms INTEGER,
        last_missed_ms INTEGER,
        pid INTEGER,
        lease_owner TEXT,
        heartbeat_ms INTEGER,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        decided INTEGER NOT NULL DEFAULT 1,
        spec TEXT
    );
    CREATE UNIQUE INDEX runs_one_per_tick ON runs(routine_id, scheduled_for_ms, attempt);
    CREATE INDEX runs_by_routine ON runs(routine_id, run_id);
    CREATE INDEX runs_active ON runs(status, not_before_ms)
        WHERE status IN ('pending', 'running');

    CREATE TABLE process_heartbeats (
        name TEXT PRIMARY KEY,
        pid INTEGER NOT NULL,
        instance TEXT NOT NULL,
        state TEXT NOT NULL,
        restarts INTEGER NOT NULL DEFAULT 0,
        heartbeat_ms INTEGER NOT NULL
    );

    CREATE TABLE daemon_state (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated_ms INTEGER NOT NULL
    );

    CREATE TABLE approvals (
        routine_id TEXT NOT NULL,
        definition_hash TEXT NOT NULL,
        mode TEXT NOT NULL,
        requested_at_ms INTEGER NOT NULL,
        granted_at_ms INTEGER,
        PRIMARY KEY (routine_id, definition_hash)
    );

    CREATE TABLE events (
        event_id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL,
        payload TEXT,
        created_ms INTEGER NOT NULL,
        consumed_ms INTEGER
    );
    CREATE INDEX events_unconsumed ON events(event_id) WHERE consumed_ms IS NULL;

    CREATE TABLE tasks (
        task_id TEXT PRIMARY KEY,
        task_kind TEXT NOT NULL,
        payload TEXT,
        priority INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL,
        not_before_ms INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER NOT NULL DEFAULT 3,
        lease_owner TEXT,
        heartbeat_ms INTEGER,
        last_error TEXT,
        created_ms INTEGER NOT NULL,
        finished_ms INTEGER
    );
    CREATE INDEX tasks_ready ON tasks(status, priority, not_before_ms);
    """,
)

MIGRATIONS += (
    # 2: delivery outbox for channel results (acknowledged by paired nodes)
    """
    CREATE TABLE outbox (
        outbox_id INTEGER PRIMARY KEY AUTOINCREMENT,
        channel TEXT NOT NULL,
        routine_id TEXT NOT NULL,
        run_id TEXT NOT NULL,
        payload TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        acked_ms INTEGER
    );
    CREATE INDEX outbox_unacked ON outbox(channel, outbox_id) WHERE acked_ms IS NULL;
    """,
)

MIGRATIONS += (
    # 3: indexes the hot loops can actually use. SQLite only uses a partial index when the
    # query's WHERE implies the index's, and `status = 'running'` does not imply
    # `status IN ('pending', 'running')`, so runs_active was never used: every executor
    # loop scanned the whole runs table.
    """
    DROP INDEX runs_active;
    CREATE INDEX runs_status ON runs(status, routine_id);
    CREATE INDEX runs_undecided ON runs(run_id) WHERE decided = 0;
    CREATE INDEX runs_cancel_requested ON runs(lease_owner) WHERE cancel_requested = 1;
    """,
)

MIGRATIONS += (
    # 4: node pairing and per-device channel delivery (SPEC §4.4, §5, §7 "Channel delivery").
    # A device receives the outbox entries created after it was paired (outbox_id above its
    # delivery_floor) that it has not acknowledged; the per-device acks replace the one
    # global outbox.acked_ms, which is now only "acknowledged by some device". A window
    # admits one request: the UNIQUE index on pairing_requests(window_id) says so. The PIN
    # is never stored and a QR token only as its SHA-256.
    """
    CREATE TABLE devices (
        device_id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('active', 'revoked')),
        public_key_sha256 TEXT NOT NULL,
        cert_sha256 TEXT NOT NULL,
        cert_expires_ms INTEGER NOT NULL,
        prev_cert_sha256 TEXT,
        prev_valid_until_ms INTEGER,
        paired_ms INTEGER NOT NULL,
        last_seen_ms INTEGER,
        revoked_ms INTEGER,
        revoke_reason TEXT,
        delivery_floor INTEGER NOT NULL,
        cert_used_ms INTEGER  -- first call made with the current certificate (NULL: none)
    );
    CREATE UNIQUE INDEX devices_cert ON devices(cert_sha256);

    CREATE TABLE pairing_windows (
        window_id TEXT PRIMARY KEY,
        method TEXT NOT NULL CHECK (method IN ('pin', 'qr')),
        token_sha256 TEXT,
        auto_approve INTEGER NOT NULL,
        host TEXT,
        opened_ms INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL,
        closed_ms INTEGER,
        close_reason TEXT CHECK (close_reason IN
            ('superseded', 'used', 'failures', 'expired', 'daemon_restart')),
        failures INTEGER NOT NULL DEFAULT 0,
        failure_peers TEXT NOT NULL DEFAULT '[]',
        CHECK ((method = 'qr') = (token_sha256 IS NOT NULL)),
        CHECK ((closed_ms IS NULL) = (close_reason IS NULL))
    );
    CREATE UNIQUE INDEX pairing_windows_token ON pairing_windows(token_sha256);

    CREATE TABLE pairing_requests (
        request_id TEXT PRIMARY KEY,
        window_id TEXT NOT NULL,
        device_id TEXT NOT NULL,
        device_name TEXT NOT NULL,
        method TEXT NOT NULL CHECK (method IN ('pin', 'qr')),
        peer TEXT NOT NULL,
        public_key_sha256 TEXT NOT NULL,
        public_key_der BLOB NOT NULL,
        await_secret_sha256 TEXT NOT NULL,
        requested_ms INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'rejected', 'issued')),
        decided_ms INTEGER
    );
    CREATE UNIQUE INDEX pairing_requests_one_per_window ON pairing_requests(window_id);

    CREATE TABLE delivery_acks (
        device_id TEXT NOT NULL,
        outbox_id INTEGER NOT NULL,
        acked_ms INTEGER NOT NULL,
        PRIMARY KEY (device_id, outbox_id)
    ) WITHOUT ROWID;
    CREATE INDEX outbox_by_channel ON outbox(channel, outbox_id);

    CREATE TABLE device_watches (
        stream_id TEXT PRIMARY KEY,
        device_id TEXT NOT NULL,
        channels TEXT NOT NULL,
        opened_ms INTEGER NOT NULL
    );
    CREATE INDEX device_watches_by_device ON device_watches(device_id);
    """,
)

MIGRATIONS += (
    # 5: self-healing incidents (SPEC §4.6, §6 "Self-healing") and their remediation attempts.
    # At most one open incident per (domain, subject): the partial UNIQUE index says so, so
    # two processes racing to open the same one cannot both insert. Resolved incidents stay
    # (history for `palyra incidents list --all`) until pruned.
    """
    CREATE TABLE incidents (
        incident_id TEXT PRIMARY KEY,
        domain TEXT NOT NULL CHECK (domain IN ('run', 'task', 'process', 'node_stream',
            'definitions', 'skills', 'disk', 'journal')),
        subject TEXT NOT NULL,
        severity TEXT NOT NULL CHECK (severity IN ('warning', 'critical')),
        state TEXT NOT NULL CHECK (state IN ('open', 'resolved')),
        summary TEXT NOT NULL,
        opened_ms INTEGER NOT NULL,
        resolved_ms INTEGER,
        CHECK ((state = 'resolved') = (resolved_ms IS NOT NULL))
    );
    CREATE UNIQUE INDEX incidents_one_open ON incidents(domain, subject) WHERE state = 'open';
    CREATE INDEX incidents_newest ON incidents(opened_ms DESC, incident_id DESC);
    CREATE INDEX incidents_resolved ON incidents(resolved_ms) WHERE state = 'resolved';

    CREATE TABLE incident_remediations (
        incident_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        action TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        outcome TEXT NOT NULL CHECK (outcome IN ('succeeded', 'failed', 'skipped')),
        detail TEXT NOT NULL,
        PRIMARY KEY (incident_id, seq)
    ) WITHOUT ROWID;
    """,
)

MIGRATIONS += (
    # 6: node-stream health (SPEC §6 "Self-healing", domain node_stream). Each open watch
    # stream journals its progress (heartbeat_ms, a few times per stale bound) and, in the
    # same write, when it sent the oldest delivery the device has not acknowledged yet
    # (unacked_since_ms, NULL when it owes nothing): a node that keeps its TCP connection
    # but stopped reading (SIGSTOP) lets sends succeed into kernel buffers, so ack lag is
    # the only sign of it. close_requested_ms: self-healing asked node_rpc to close the
    # stream. Rows written before this migration take their opening time as a heartbeat.
    """
    ALTER TABLE device_watches ADD COLUMN heartbeat_ms INTEGER;
    ALTER TABLE device_watches ADD COLUMN close_requested_ms INTEGER;
    ALTER TABLE device_watches ADD COLUMN unacked_since_ms INTEGER;
    UPDATE device_watches SET heartbeat_ms = opened_ms WHERE heartbeat_ms IS NULL
    """,
)

MIGRATIONS += (
    # 7: the background queue (SPEC §6, §4.6). Migration 1's ``tasks`` placeholder was never
    # written, so it is replaced. ``seq`` orders tasks FIFO within a priority; a claim sets
    # ``lease_token`` (the fencing token: only its holder may heartbeat, finish or fail the
    # task) and ``lease_until_ms`` (past it, another worker may take the task over).
    # ``unique_key``: at most one pending or running task per key (each maintenance kind).
    """
    DROP TABLE tasks;
    CREATE TABLE tasks (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        task_id TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        payload TEXT NOT NULL DEFAULT 'null',
        priority INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'succeeded', 'failed',
                                                'cancelled')),
        attempt INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
        not_before_ms INTEGER NOT NULL,
        created_ms INTEGER NOT NULL,
        started_ms INTEGER,
        finished_ms INTEGER,
        heartbeat_ms INTEGER,
        lease_owner TEXT,
        lease_token TEXT,
        lease_until_ms INTEGER,
        error TEXT,
        unique_key TEXT
    );
    CREATE INDEX tasks_ready ON tasks(priority DESC, seq) WHERE status = 'pending';
    CREATE INDEX tasks_leased ON tasks(lease_until_ms) WHERE status = 'running';
    CREATE UNIQUE INDEX tasks_one_active ON tasks(unique_key)
        WHERE unique_key IS NOT NULL AND status IN ('pending', 'running');
    CREATE INDEX tasks_by_kind ON tasks(kind, seq)
    """,
    # 8: a run's channel delivery is found by its run: the ``delivery`` task runs at least
    # once (a re-run after a crash, a take-over, a lost success record) and adds its outbox
    # entry only once.
    """
    CREATE INDEX outbox_by_run ON outbox(run_id, channel)
    """,
)

MIGRATIONS += (
    # 9: the webhook replay cache (SPEC §4.5). A timestamped request's MAC is remembered per
    # routine until its timestamp leaves the ±300 s window (``expires_ms``): a second request
    # with the same MAC bytes before then is a replay, also after a daemon restart. Only
    # accepted requests are remembered, in the same transaction as their run record.
    """
    CREATE TABLE webhook_replays (
        routine_id TEXT NOT NULL,
        mac BLOB NOT NULL,
        expires_ms INTEGER NOT NULL,
        PRIMARY KEY (routine_id, mac)
    ) WITHOUT ROWID;
    CREATE INDEX webhook_replays_expiry ON webhook_replays(expires_ms)
    """,
)

MIGRATIONS += (
    # 10: skills (SPEC §6). One audit row per installed (skill_id, version): its state, the
    # reason of a quarantine, and ``audited_key`` — the digest of the exact (id, version,
    # publisher, artifact hash, signature, publisher key) that passed, which a skill run must
    # match (an edit of the index or the trust store not audited yet never runs). An
    # operator's quarantine is per skill id, so it covers every version, also later ones,
    # and no audit lifts it.
    """
    CREATE TABLE skill_audits (
        skill_id TEXT NOT NULL,
        version TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('active', 'quarantined')),
        reason TEXT,
        audited_key TEXT,
        last_audit_ms INTEGER NOT NULL,
        PRIMARY KEY (skill_id, version)
    ) WITHOUT ROWID;
    CREATE TABLE skill_quarantines (
        skill_id TEXT PRIMARY KEY,
        reason TEXT,
        at_ms INTEGER NOT NULL
    )
    """,
)

MIGRATIONS += (
    # 11: memory and learning (SPEC §6). ``seq`` is the item's row id: the full-text index's
    # content row id and the vectors' key; AUTOINCREMENT so a deleted item's number is never
    # handed to another (a search's cached vectors are keyed by it). Items are immutable: the
    # FTS5 index (external content, porter-stemmed) is kept in step by the domain's own
    # inserts and deletes (no triggers: migrations are split on ";"). ``vid`` grows with every
    # vector written, so a process that cached vectors loads only newer ones. An item an
    # embedder refused is remembered per embedder, so one bad text never stalls a backfill.
    # A learning candidate is unique per (run, output line), and a reflection keeps the
    # problems it reported: a retried reflection records nothing twice and reports the same.
    """
    CREATE TABLE memory_items (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        item_id TEXT NOT NULL UNIQUE,
        text TEXT NOT NULL,
        tags TEXT NOT NULL,
        source TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL,
        bytes INTEGER NOT NULL
    );
    CREATE INDEX memory_items_created ON memory_items(created_ms, seq);
    CREATE INDEX memory_items_expires ON memory_items(expires_ms);
    CREATE TABLE memory_tags (
        tag TEXT NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (tag, seq)
    ) WITHOUT ROWID;
    CREATE INDEX memory_tags_seq ON memory_tags(seq);
    CREATE VIRTUAL TABLE memory_fts USING fts5(
        text, content='memory_items', content_rowid='seq',
        tokenize='porter unicode61 remove_diacritics 2'
    );
    CREATE VIRTUAL TABLE memory_fts_vocab USING fts5vocab(memory_fts, 'row');
    CREATE TABLE memory_vectors (
        vid INTEGER PRIMARY KEY AUTOINCREMENT,
        seq INTEGER NOT NULL UNIQUE,
        embedder TEXT NOT NULL,
        quantized BLOB NOT NULL,
        code BLOB NOT NULL
    );
    CREATE INDEX memory_vectors_embedder ON memory_vectors(embedder, vid);
    CREATE TABLE learning_candidates (
        candidate_id TEXT PRIMARY KEY,
        run_id TEXT NOT NULL,
        line_no INTEGER NOT NULL,
        routine_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        text TEXT NOT NULL,
        confidence REAL NOT NULL,
        created_ms INTEGER NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending', 'written', 'accepted', 'rejected')),
        decided_ms INTEGER,
        item_id TEXT,
        UNIQUE (run_id, line_no)
    );
    CREATE INDEX learning_candidates_status ON learning_candidates(status, created_ms);
    CREATE TABLE memory_embed_failures (
        seq INTEGER NOT NULL,
        embedder TEXT NOT NULL,
        error TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        PRIMARY KEY (seq, embedder)
    ) WITHOUT ROWID;
    CREATE TABLE learning_reflections (
        run_id TEXT PRIMARY KEY,
        routine_id TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        recorded INTEGER NOT NULL,
        problems TEXT
    );
    CREATE INDEX learning_reflections_routine ON learning_reflections(routine_id, at_ms)
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)
