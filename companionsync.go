// Package companionsync is the domain of companion connections: orgs (home
// and companion, production or sandbox), the connections between them, the
// data spaces a home org shares with its companions, their metadata change
// log, and the error log of metadata syncs. Its Orgs port, with the sentinel
// errors its implementations report, is how the activities reach the system
// of record; package orgstore implements it.
//
// The package imports no Temporal package: it is plain Go that the
// activities, the store and any other adapter share.
package companionsync

import (
	"context"
	"errors"
	"time"
)

// Orgs is the port to the system of record that holds orgs, their data
// spaces and the companion-side copies. Implementations make each method one
// atomic step (a transaction where it writes) and enforce the invariants that
// concurrent activities could otherwise break; the activities decide what to
// do with the answers. Orgs is safe for concurrent use.
//
// Errors: a missing org, data space or connection is reported with an error
// wrapping ErrNotFound; anything else is a transient failure worth retrying.
type Orgs interface {
	Registry
	Records
	Metadata
}

// Registry reads orgs and keeps the registry of connections.
type Registry interface {
	// CompanionCount returns how many companions the home org is connected
	// to (its taken companion slots).
	CompanionCount(ctx context.Context, home string) (int, error)
	// Org returns the org with the given id, or an error wrapping ErrNotFound.
	Org(ctx context.Context, id string) (Org, error)
	// DataSpaces returns the names of the home org's data spaces, sorted.
	DataSpaces(ctx context.Context, home string) ([]string, error)
	// ConnectionOf returns the connection the companion is registered in, or
	// an error wrapping ErrNotFound when it is in none.
	ConnectionOf(ctx context.Context, companion string) (Connection, error)
	// Register records c in one transaction. It succeeds without change when
	// c is already registered with the same Token (a retried handshake). It
	// fails with ErrCompanionTaken when the companion is registered in any
	// other connection (another home, or this home with another token), and
	// with ErrCompanionLimit when the home already has maxCompanions
	// connections. Both checks and the insert are atomic, so two concurrent
	// registrations can never both pass.
	Register(ctx context.Context, c Connection, maxCompanions int) error
	// Deregister removes the connection home/companion from the registry. It
	// is idempotent and never removes the companion's connection to another
	// home.
	Deregister(ctx context.Context, home, companion string) error
	// Connections returns up to limit registered connections whose companion
	// sorts after the given one ("" for the first page), in companion order:
	// a page of the registry. A page shorter than limit is the last.
	Connections(ctx context.Context, after string, limit int) ([]Connection, error)
}

// Records moves a data space's records between a home org and a companion.
type Records interface {
	// RecordCount returns the number of records in the home's data space.
	RecordCount(ctx context.Context, home, dataSpace string) (int, error)
	// CopiedCount returns the number of the data space's records present
	// in the companion.
	CopiedCount(ctx context.Context, s Share) (int, error)
	// CopyBatch upserts, in one transaction, the companion copies of up to
	// limit records with ids greater than after, in id order. Copies are
	// keyed by (companion, data space, object, record id), so replaying a
	// batch duplicates nothing.
	CopyBatch(ctx context.Context, s Share, after string, limit int) (CopiedBatch, error)
	// CompleteInitialSync copies the data space's metadata objects to the
	// companion (leaving locally edited copies alone) and sets the share's
	// metadata cursor to the home's latest change, in one transaction, so
	// that metadata rounds apply only later changes. It is idempotent.
	CompleteInitialSync(ctx context.Context, s Share) error
	// RemoveBatch deletes up to limit of the companion's record copies of
	// the data space in one transaction and reports whether any remain. It
	// never touches another data space or another companion.
	RemoveBatch(ctx context.Context, s Share, limit int) (removed int, more bool, err error)
	// CompleteRemoval deletes the companion's metadata copies and metadata
	// cursor of the share, and anything else the implementation keeps per
	// share (such as demo fault injections). It is idempotent.
	CompleteRemoval(ctx context.Context, s Share) error
}

// Metadata syncs metadata changes of the home's change log to a companion.
type Metadata interface {
	// PendingChanges counts the changes not yet applied to the companion in
	// the given data spaces, and returns the highest sequence among them
	// (0 when none). Data spaces not initially synced to the companion (no
	// cursor) have nothing pending.
	PendingChanges(ctx context.Context, c Connection, dataSpaces []string) (count int, upTo int64, err error)
	// Changes returns the unapplied changes with sequence <= upTo in the
	// given data spaces, in sequence order. Data spaces not initially synced
	// to the companion are skipped.
	Changes(ctx context.Context, c Connection, dataSpaces []string, upTo int64) ([]Change, error)
	// LocalObjects returns the companion's objects in the given data spaces
	// that a sync must not overwrite: locally edited synced copies and
	// objects created in the companion.
	LocalObjects(ctx context.Context, c Connection, dataSpaces []string) ([]LocalObject, error)
	// ApplyChange applies ch to the companion's copy and advances the
	// share's cursor to ch.Sequence in the same transaction. applied is
	// false, with no change made, when the cursor is already at or past
	// ch.Sequence (the change was applied before) or the share is no longer
	// synced. It fails with ErrConflict, applying nothing, when the
	// companion holds a local edit of the object or a local object with its
	// name.
	ApplyChange(ctx context.Context, c Connection, ch Change) (applied bool, err error)
	// LogErrors appends entries to the connection's error log. An entry is
	// identified by (round, sequence): writing it again is a no-op.
	LogErrors(ctx context.Context, c Connection, round string, entries []ErrorLogEntry) error
}

// Sentinel errors of the Orgs port; match them with errors.Is.
var (
	// ErrNotFound: the org, data space or connection does not exist.
	ErrNotFound = errors.New("not found")
	// ErrCompanionTaken: the companion is already registered in a connection.
	ErrCompanionTaken = errors.New("companion already connected")
	// ErrCompanionLimit: the home has reached its maximum number of companions.
	ErrCompanionLimit = errors.New("companion limit reached")
	// ErrConflict: applying a change would overwrite a companion-side edit.
	ErrConflict = errors.New("conflicts with a companion-side edit")
	// ErrFenced: a later step of the share holds a greater fencing token
	// (Share.Fence); the write was refused.
	ErrFenced = errors.New("fenced off by a later step of the share")
)

// Role is what an org is in companion connections.
type Role string

// Roles.
const (
	// RoleHome: the org holds the data platform licence and shares its
	// data spaces.
	RoleHome Role = "home"
	// RoleCompanion: the org sees a home org's shared data spaces.
	RoleCompanion Role = "companion"
)

// Kind is an org's environment; only orgs of the same kind can connect.
type Kind string

// Kinds of orgs.
const (
	// KindProduction is a production org.
	KindProduction Kind = "production"
	// KindSandbox is a sandbox org.
	KindSandbox Kind = "sandbox"
)

// Org is a home or companion org.
type Org struct {
	ID   string
	Role Role
	Kind Kind
	// LicenceExpiresAt is when a home org's licence expires; zero for companions.
	LicenceExpiresAt time.Time
	// MaxCompanions is how many companion connections a home org may have.
	MaxCompanions int
	// Active reports whether a companion org is active; home orgs are always active.
	Active bool
}

// Connection is a registered home/companion pair. Token identifies the
// workflow that registered it.
type Connection struct {
	Home      string
	Companion string
	Token     string
}

// Share is one data space of a home org shared with one companion.
type Share struct {
	Home      string
	Companion string
	DataSpace string
	// Fence, when not zero, is the fencing token of the step that writes
	// the share's copies: CopyBatch, CompleteInitialSync, RemoveBatch and
	// CompleteRemoval record the greatest token they have seen for the
	// share and refuse, with ErrFenced and without writing, a token smaller
	// than it. A later step (a removal after a copy, a new share's copy
	// after a removal) thus shuts out an attempt of an earlier one that
	// still runs somewhere. Zero writes unfenced.
	Fence int64
}

// CopiedBatch is what one CopyBatch did.
type CopiedBatch struct {
	// Last is the greatest record id copied so far (the new checkpoint); it
	// equals the after argument when the batch was empty.
	Last string
	// Copied is the number of records written by this batch.
	Copied int
	// Added is how many of them were new to the companion (the others
	// replaced an earlier copy of a replayed batch).
	Added int
	// More reports whether records with ids greater than Last remain.
	More bool
}

// Metadata object kinds (Change.ObjectKind).
const (
	// ObjectDMO is a data model object.
	ObjectDMO = "dmo"
	// ObjectCalculatedInsight is a calculated insight.
	ObjectCalculatedInsight = "calculated-insight"
	// ObjectSegment is a segment.
	ObjectSegment = "segment"
)

// Change is one entry of a home org's metadata change log: a new version of
// a metadata object in a data space.
type Change struct {
	Sequence   int64
	DataSpace  string
	Object     string
	ObjectKind string
	Version    int
	Definition string
}

// LocalObject is a companion-side object that a sync must not overwrite.
type LocalObject struct {
	DataSpace string
	Name      string
	// Edited is true for a synced copy edited in the companion, false for
	// an object created in the companion.
	Edited bool
}

// Kinds of error-log entries (ErrorLogEntry.Kind).
const (
	// ErrorKindConflict: the change conflicts with a companion-side edit or
	// local object.
	ErrorKindConflict = "conflict"
	// ErrorKindInvalid: the change cannot be applied (unknown object kind or
	// invalid definition).
	ErrorKindInvalid = "invalid"
	// ErrorKindFailed: a metadata round failed for another reason than its
	// changes (for example retries exhausted).
	ErrorKindFailed = "failed"
)

// ErrorLogEntry is one entry of a connection's error log: a failed metadata
// change, or (Sequence 0) a metadata round that failed for another reason.
// Kind is one of the ErrorKind constants.
type ErrorLogEntry struct {
	Sequence  int64     `json:"sequence"`
	DataSpace string    `json:"dataSpace"`
	Object    string    `json:"object"`
	Kind      string    `json:"kind"`
	Message   string    `json:"message"`
	At        time.Time `json:"at"`
}
