package orgstore

// sqliteMigrations are the SQLite schema versions, in order: element i is
// version i+1. Never edit an applied migration; append a new one, to both
// lists. Timestamps are BIGINT milliseconds since the Unix epoch (UTC),
// booleans INTEGER 0/1, in both databases, so the statements are shared.
var sqliteMigrations = [][]string{
	{
		`CREATE TABLE orgs (
			id                 TEXT PRIMARY KEY,
			role               TEXT NOT NULL CHECK (role IN ('home', 'companion')),
			kind               TEXT NOT NULL CHECK (kind IN ('production', 'sandbox')),
			licence_expires_at BIGINT,
			max_companions     INTEGER NOT NULL DEFAULT 0,
			active             INTEGER NOT NULL DEFAULT 1
		)`,
		// The connection registry: a companion is in at most one connection.
		`CREATE TABLE connections (
			companion    TEXT PRIMARY KEY REFERENCES orgs (id),
			home         TEXT NOT NULL REFERENCES orgs (id),
			token        TEXT NOT NULL,
			connected_at BIGINT NOT NULL
		)`,
		`CREATE INDEX connections_by_home ON connections (home)`,
		`CREATE TABLE data_spaces (
			id   INTEGER PRIMARY KEY,
			home TEXT NOT NULL REFERENCES orgs (id),
			name TEXT NOT NULL,
			UNIQUE (home, name)
		)`,
		// Records of several objects; ids are unique within a data space so
		// they order the initial sync.
		`CREATE TABLE records (
			data_space_id INTEGER NOT NULL REFERENCES data_spaces (id),
			id            TEXT NOT NULL,
			object        TEXT NOT NULL,
			payload       TEXT NOT NULL,
			PRIMARY KEY (data_space_id, id)
		)`,
		`CREATE TABLE metadata_objects (
			data_space_id INTEGER NOT NULL REFERENCES data_spaces (id),
			name          TEXT NOT NULL,
			kind          TEXT NOT NULL,
			version       INTEGER NOT NULL,
			definition    TEXT NOT NULL,
			PRIMARY KEY (data_space_id, name)
		)`,
		// The outbox: every new version of a metadata object, in order.
		`CREATE TABLE metadata_changes (
			seq           INTEGER PRIMARY KEY,
			home          TEXT NOT NULL REFERENCES orgs (id),
			data_space_id INTEGER NOT NULL REFERENCES data_spaces (id),
			object        TEXT NOT NULL,
			kind          TEXT NOT NULL,
			version       INTEGER NOT NULL,
			definition    TEXT NOT NULL,
			created_at    BIGINT NOT NULL
		)`,
		`CREATE INDEX metadata_changes_by_data_space ON metadata_changes (data_space_id, seq)`,
		// The last change applied to a companion per shared data space.
		`CREATE TABLE metadata_cursors (
			companion     TEXT NOT NULL REFERENCES orgs (id),
			data_space_id INTEGER NOT NULL REFERENCES data_spaces (id),
			seq           BIGINT NOT NULL,
			PRIMARY KEY (companion, data_space_id)
		)`,
		`CREATE TABLE companion_records (
			companion     TEXT NOT NULL REFERENCES orgs (id),
			data_space_id INTEGER NOT NULL REFERENCES data_spaces (id),
			object        TEXT NOT NULL,
			record_id     TEXT NOT NULL,
			payload       TEXT NOT NULL,
			-- record_id before object: batches scan record id ranges.
			PRIMARY KEY (companion, data_space_id, record_id, object)
		)`,
		// Synced metadata copies; local_definition holds a companion-side
		// edit when local_edit is 1.
		`CREATE TABLE companion_metadata (
			companion        TEXT NOT NULL REFERENCES orgs (id),
			data_space_id    INTEGER NOT NULL REFERENCES data_spaces (id),
			name             TEXT NOT NULL,
			kind             TEXT NOT NULL,
			version          INTEGER NOT NULL,
			definition       TEXT NOT NULL,
			local_edit       INTEGER NOT NULL DEFAULT 0,
			local_definition TEXT,
			PRIMARY KEY (companion, data_space_id, name)
		)`,
		// Objects created in the companion, not by sync.
		`CREATE TABLE companion_local_objects (
			companion     TEXT NOT NULL REFERENCES orgs (id),
			data_space_id INTEGER NOT NULL REFERENCES data_spaces (id),
			name          TEXT NOT NULL,
			kind          TEXT NOT NULL,
			definition    TEXT NOT NULL,
			PRIMARY KEY (companion, data_space_id, name)
		)`,
		`CREATE TABLE error_log (
			home       TEXT NOT NULL,
			companion  TEXT NOT NULL,
			round      TEXT NOT NULL,
			seq        BIGINT NOT NULL,
			data_space TEXT NOT NULL,
			object     TEXT NOT NULL,
			kind       TEXT NOT NULL CHECK (kind IN ('conflict', 'invalid', 'failed')),
			message    TEXT NOT NULL,
			at         BIGINT NOT NULL,
			PRIMARY KEY (home, companion, round, seq)
		)`,
		// Demo faults: the next N initial-sync steps of a share fail.
		`CREATE TABLE injected_failures (
			companion     TEXT NOT NULL REFERENCES orgs (id),
			data_space_id INTEGER NOT NULL REFERENCES data_spaces (id),
			remaining     INTEGER NOT NULL,
			PRIMARY KEY (companion, data_space_id)
		)`,
	},
}

// postgresMigrations are the PostgreSQL schema versions, the same tables as
// sqliteMigrations with PostgreSQL's types: identity columns for generated
// ids, and the "C" collation on the text keys that order batches and lists,
// so that record ids compare byte by byte as in SQLite whatever the
// database's locale (the copy checkpoint relies on that order).
var postgresMigrations = [][]string{
	{
		`CREATE TABLE orgs (
			id                 TEXT PRIMARY KEY,
			role               TEXT NOT NULL CHECK (role IN ('home', 'companion')),
			kind               TEXT NOT NULL CHECK (kind IN ('production', 'sandbox')),
			licence_expires_at BIGINT,
			max_companions     INTEGER NOT NULL DEFAULT 0,
			active             INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1))
		)`,
		`CREATE TABLE connections (
			companion    TEXT PRIMARY KEY REFERENCES orgs (id),
			home         TEXT NOT NULL REFERENCES orgs (id),
			token        TEXT NOT NULL,
			connected_at BIGINT NOT NULL
		)`,
		`CREATE INDEX connections_by_home ON connections (home)`,
		`CREATE TABLE data_spaces (
			id   BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
			home TEXT NOT NULL REFERENCES orgs (id),
			name TEXT COLLATE "C" NOT NULL,
			UNIQUE (home, name)
		)`,
		`CREATE TABLE records (
			data_space_id BIGINT NOT NULL REFERENCES data_spaces (id),
			id            TEXT COLLATE "C" NOT NULL,
			object        TEXT NOT NULL,
			payload       TEXT NOT NULL,
			PRIMARY KEY (data_space_id, id)
		)`,
		`CREATE TABLE metadata_objects (
			data_space_id BIGINT NOT NULL REFERENCES data_spaces (id),
			name          TEXT COLLATE "C" NOT NULL,
			kind          TEXT NOT NULL,
			version       INTEGER NOT NULL,
			definition    TEXT NOT NULL,
			PRIMARY KEY (data_space_id, name)
		)`,
		// Publishers of a data space serialise on its data_spaces row, so
		// sequences commit in order within a data space: a reader never
		// sees seq n+1 before seq n, and per-data-space cursors never skip.
		`CREATE TABLE metadata_changes (
			seq           BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
			home          TEXT NOT NULL REFERENCES orgs (id),
			data_space_id BIGINT NOT NULL REFERENCES data_spaces (id),
			object        TEXT NOT NULL,
			kind          TEXT NOT NULL,
			version       INTEGER NOT NULL,
			definition    TEXT NOT NULL,
			created_at    BIGINT NOT NULL
		)`,
		`CREATE INDEX metadata_changes_by_data_space ON metadata_changes (data_space_id, seq)`,
		`CREATE TABLE metadata_cursors (
			companion     TEXT NOT NULL REFERENCES orgs (id),
			data_space_id BIGINT NOT NULL REFERENCES data_spaces (id),
			seq           BIGINT NOT NULL,
			PRIMARY KEY (companion, data_space_id)
		)`,
		`CREATE TABLE companion_records (
			companion     TEXT NOT NULL REFERENCES orgs (id),
			data_space_id BIGINT NOT NULL REFERENCES data_spaces (id),
			object        TEXT NOT NULL,
			record_id     TEXT COLLATE "C" NOT NULL,
			payload       TEXT NOT NULL,
			PRIMARY KEY (companion, data_space_id, record_id, object)
		)`,
		`CREATE TABLE companion_metadata (
			companion        TEXT NOT NULL REFERENCES orgs (id),
			data_space_id    BIGINT NOT NULL REFERENCES data_spaces (id),
			name             TEXT COLLATE "C" NOT NULL,
			kind             TEXT NOT NULL,
			version          INTEGER NOT NULL,
			definition       TEXT NOT NULL,
			local_edit       INTEGER NOT NULL DEFAULT 0 CHECK (local_edit IN (0, 1)),
			local_definition TEXT,
			PRIMARY KEY (companion, data_space_id, name)
		)`,
		`CREATE TABLE companion_local_objects (
			companion     TEXT NOT NULL REFERENCES orgs (id),
			data_space_id BIGINT NOT NULL REFERENCES data_spaces (id),
			name          TEXT COLLATE "C" NOT NULL,
			kind          TEXT NOT NULL,
			definition    TEXT NOT NULL,
			PRIMARY KEY (companion, data_space_id, name)
		)`,
		`CREATE TABLE error_log (
			home       TEXT NOT NULL,
			companion  TEXT NOT NULL,
			round      TEXT NOT NULL,
			seq        BIGINT NOT NULL,
			data_space TEXT NOT NULL,
			object     TEXT NOT NULL,
			kind       TEXT NOT NULL CHECK (kind IN ('conflict', 'invalid', 'failed')),
			message    TEXT NOT NULL,
			at         BIGINT NOT NULL,
			PRIMARY KEY (home, companion, round, seq)
		)`,
		`CREATE TABLE injected_failures (
			companion     TEXT NOT NULL REFERENCES orgs (id),
			data_space_id BIGINT NOT NULL REFERENCES data_spaces (id),
			remaining     INTEGER NOT NULL,
			PRIMARY KEY (companion, data_space_id)
		)`,
	},
}

// additiveSchema is schema that earlier releases never read, in both
// databases. It is created on open, idempotently and outside the versioned
// migrations: an earlier release refuses a database whose version is newer
// than it knows, and must still open the store while a rolling deploy
// replaces it.
var additiveSchema = []string{
	// The greatest fencing token seen per share (companionsync.Share.Fence).
	// A row outlives the share: a new share of the same data space must
	// still shut out an attempt of the old one.
	`CREATE TABLE IF NOT EXISTS share_fences (
		companion     TEXT NOT NULL,
		data_space_id BIGINT NOT NULL,
		token         BIGINT NOT NULL,
		PRIMARY KEY (companion, data_space_id)
	)`,
	// Where a removal's last batch ended, per share: the next batch starts
	// after it instead of scanning again, from the first key, over the
	// copies just deleted (on PostgreSQL dead index entries until vacuum).
	// Only a hint: a removal still ends with a check from the first key.
	`CREATE TABLE IF NOT EXISTS removal_cursors (
		companion     TEXT NOT NULL,
		data_space_id BIGINT NOT NULL,
		record_id     TEXT NOT NULL,
		object        TEXT NOT NULL,
		PRIMARY KEY (companion, data_space_id)
	)`,
	// The audit trail: one row per request to a connection, kept after the
	// connection disconnects (AuditLog). at is Unix nanoseconds.
	`CREATE TABLE IF NOT EXISTS audit_log (
		connection TEXT NOT NULL,
		id         TEXT NOT NULL,
		at         BIGINT NOT NULL,
		actor      TEXT NOT NULL,
		request    TEXT NOT NULL,
		subject    TEXT NOT NULL,
		via        TEXT NOT NULL,
		outcome    TEXT NOT NULL,
		reason     TEXT NOT NULL,
		PRIMARY KEY (connection, id)
	)`,
	`CREATE INDEX IF NOT EXISTS audit_log_at ON audit_log (connection, at)`,
	// Notifications delivered, by event ID: a retried or repeated delivery
	// of the same event is sent once (Notices).
	`CREATE TABLE IF NOT EXISTS notices_sent (
		id      TEXT PRIMARY KEY,
		sent_at BIGINT NOT NULL
	)`,
	// Incidents the reconciler has open (vanished or stuck workflows), so
	// that each is notified once when found and once when it clears.
	// Leases: a named role one worker holds at a time (the export of the
	// fleet's gauges), until expires_at (Unix nanoseconds) unless renewed.
	`CREATE TABLE IF NOT EXISTS leases (
		name       TEXT PRIMARY KEY,
		owner      TEXT NOT NULL,
		expires_at BIGINT NOT NULL
	)`,
	// Connections that wait without timers (the fleet watcher's baseline):
	// the digest of the health each last saw, and whether its metadata sync
	// waits for changes in metadata_spaces (a JSON list).
	`CREATE TABLE IF NOT EXISTS watches (
		home             TEXT NOT NULL,
		companion        TEXT NOT NULL,
		health           TEXT NOT NULL,
		metadata_spaces  TEXT NOT NULL,
		metadata_waiting INTEGER NOT NULL,
		PRIMARY KEY (home, companion)
	)`,
	`CREATE TABLE IF NOT EXISTS incidents (
		incident_key TEXT PRIMARY KEY,
		body         TEXT NOT NULL,
		since        BIGINT NOT NULL
	)`,
}
