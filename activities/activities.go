package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/companionsync/companionsync"
	"github.com/companionsync/companionsync/contract"
)

// DefaultBatchSize is the batch size of copies and removals when the input
// leaves it zero.
const DefaultBatchSize = 500

// Activities implements every activity of the companion connection
// workflows. Workflows call the methods through a nil *Activities; the
// worker registers a value whose Orgs is set.
type Activities struct {
	// Orgs is the system of record. Required.
	Orgs companionsync.Orgs
	// Now is the clock used for licence checks, log timestamps and work
	// budgets. Nil means time.Now.
	Now func() time.Time
	// Unavailable classifies an error of Orgs as the store being
	// unreachable (orgstore.Unavailable): copies and removals then wait for
	// it, and short steps fail at once. Nil treats no error so.
	Unavailable func(error) bool
	// OutageLimit is how long copies and removals wait for an unreachable
	// store before their steps fail; zero means DefaultOutageLimit.
	OutageLimit time.Duration
	// OutageWait bounds how long one step waits for the store before it
	// returns its progress with the outage; zero means DefaultOutageWait.
	OutageWait time.Duration
	// Audit keeps the audit trail; nil uses Orgs when it keeps one.
	Audit AuditLog
	// Notifier delivers the connections' notifications; nil logs them only.
	Notifier *Notifier
}

func (a *Activities) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

// Handshake checks every eligibility rule of SPEC, in this order: the home
// exists (and is a home org), the companion exists, is not a home org, is
// active, is of the same kind as the home, the home licence is valid, the
// companion is in no other connection, and the home is under its maximum of
// companions. The last two are enforced again atomically when the connection
// is registered. A refusal is a non-retryable ErrIneligible error whose
// details are an Ineligibility naming the rule. Handshake is idempotent for
// the same Token. It runs inside the connection's first workflow task: an
// org store unreachable or too slow to answer within handshakeStoreTimeout
// fails it at once with the non-retryable ErrStoreUnavailable, and the
// workflow tries again later.
func (a *Activities) Handshake(ctx context.Context, in HandshakeInput) (HandshakeResult, error) {
	ctx, cancel := context.WithTimeout(ctx, handshakeStoreTimeout)
	defer cancel()
	res, err := a.handshake(ctx, in)
	var app *temporal.ApplicationError
	if err != nil && !errors.As(err, &app) && a.shortStepOutage(ctx, err) {
		return HandshakeResult{}, storeDown(err, fmt.Sprintf("handshake %s/%s", in.Home, in.Companion))
	}
	return res, err
}

// handshakeStoreTimeout bounds the handshake's store calls: about a dozen
// round trips.
const handshakeStoreTimeout = 2 * shortStepStoreTimeout

func (a *Activities) handshake(ctx context.Context, in HandshakeInput) (HandshakeResult, error) {
	home, err := a.Orgs.Org(ctx, in.Home)
	if errors.Is(err, companionsync.ErrNotFound) {
		return HandshakeResult{}, ineligible(RuleHomeExists,
			fmt.Sprintf("home org %q does not exist; check the org id", in.Home))
	}
	if err != nil {
		return HandshakeResult{}, fmt.Errorf("handshake %s/%s: read home org: %w", in.Home, in.Companion, err)
	}
	if home.Role != companionsync.RoleHome {
		return HandshakeResult{}, ineligible(RuleHomeExists,
			fmt.Sprintf("org %q is not a home org; connect from the org that holds the data platform licence", in.Home))
	}
	companion, err := a.Orgs.Org(ctx, in.Companion)
	if errors.Is(err, companionsync.ErrNotFound) {
		return HandshakeResult{}, ineligible(RuleCompanionExists,
			fmt.Sprintf("companion org %q does not exist; check the org id", in.Companion))
	}
	if err != nil {
		return HandshakeResult{}, fmt.Errorf("handshake %s/%s: read companion org: %w", in.Home, in.Companion, err)
	}
	if companion.Role == companionsync.RoleHome {
		return HandshakeResult{}, ineligible(RuleCompanionNotHome,
			fmt.Sprintf("org %q is a home org and cannot be a companion; choose a companion org", in.Companion))
	}
	if !companion.Active {
		return HandshakeResult{}, ineligible(RuleCompanionActive,
			fmt.Sprintf("companion org %q is not active; reactivate it, then connect again", in.Companion))
	}
	if companion.Kind != home.Kind {
		return HandshakeResult{}, ineligible(RuleSameKind,
			fmt.Sprintf("home org %q is %s but companion org %q is %s; only orgs of the same kind can connect (a sandbox cannot connect to production)",
				in.Home, home.Kind, in.Companion, companion.Kind))
	}
	if expired(home, a.now()) {
		return HandshakeResult{}, ineligible(RuleHomeLicenceValid,
			fmt.Sprintf("the licence of home org %q expired at %s; renew it, then connect again",
				in.Home, home.LicenceExpiresAt.UTC().Format(time.RFC3339)))
	}
	conn := companionsync.Connection{Home: in.Home, Companion: in.Companion, Token: in.Token}
	if err := a.refuseTaken(ctx, conn, nil); err != nil {
		return HandshakeResult{}, err
	}
	err = a.Orgs.Register(ctx, conn, home.MaxCompanions)
	switch {
	case errors.Is(err, companionsync.ErrCompanionTaken):
		// Registered concurrently by another handshake.
		return HandshakeResult{}, a.refuseTaken(ctx, conn, err)
	case errors.Is(err, companionsync.ErrCompanionLimit):
		return HandshakeResult{}, ineligible(RuleHomeUnderCompanionMax,
			fmt.Sprintf("home org %q already has its maximum of %d companion connections; disconnect one first",
				in.Home, home.MaxCompanions))
	case err != nil:
		return HandshakeResult{}, fmt.Errorf("handshake %s/%s: register connection: %w", in.Home, in.Companion, err)
	}
	spaces, err := a.Orgs.DataSpaces(ctx, in.Home)
	if err != nil {
		return HandshakeResult{}, fmt.Errorf("handshake %s/%s: list data spaces: %w", in.Home, in.Companion, err)
	}
	used, err := a.Orgs.CompanionCount(ctx, in.Home)
	if err != nil {
		return HandshakeResult{}, fmt.Errorf("handshake %s/%s: count companions: %w", in.Home, in.Companion, err)
	}
	res := HandshakeResult{DataSpaces: spaces,
		Licence: contract.Licence{ExpiresAt: home.LicenceExpiresAt, CompanionsUsed: used, CompanionsMax: home.MaxCompanions}}
	if in.Watch {
		if err := a.watch(ctx, conn, healthOf(home, companion, spaces, used, a.now())); err != nil {
			return HandshakeResult{}, fmt.Errorf("handshake %s/%s: record what it saw for the fleet watcher: %w", in.Home, in.Companion, err)
		}
	}
	return res, nil
}

// refuseTaken returns the RuleCompanionUnconnected refusal when the companion
// is registered in a connection other than conn. cause is the registration
// error that prompted the check, if any: it is returned (to be retried) when
// the registry shows no other connection after all.
func (a *Activities) refuseTaken(ctx context.Context, conn companionsync.Connection, cause error) error {
	existing, err := a.Orgs.ConnectionOf(ctx, conn.Companion)
	if errors.Is(err, companionsync.ErrNotFound) {
		return cause
	}
	if err != nil {
		return fmt.Errorf("handshake %s/%s: read registry: %w", conn.Home, conn.Companion, err)
	}
	if existing == conn {
		return cause
	}
	msg := fmt.Sprintf("companion org %q is already a companion of %q; disconnect %s/%s first",
		conn.Companion, existing.Home, existing.Home, existing.Companion)
	if existing.Home == conn.Home {
		msg = fmt.Sprintf("companion org %q is already a companion of %q in another connection; use that connection or disconnect it first",
			conn.Companion, existing.Home)
	}
	return ineligible(RuleCompanionUnconnected, msg)
}

func ineligible(rule, msg string) error {
	return temporal.NewNonRetryableApplicationError(
		fmt.Sprintf("ineligible (%s): %s", rule, msg), ErrIneligible, nil,
		Ineligibility{Rule: rule, Message: msg})
}

func expired(home companionsync.Org, now time.Time) bool {
	return !now.Before(home.LicenceExpiresAt)
}

// CheckHealth reports whether the connection can function: the home licence
// is valid at Activities.Now and the companion is active. It also returns the
// home's current data spaces. An unknown org is a non-retryable ErrUnknownOrg.
// It runs inside the connection's workflow task, so its three reads run at
// once and the whole check is bounded by shortStepStoreTimeout: a slow store
// holds the task for one round of reads, and never longer than the bound.
func (a *Activities) CheckHealth(ctx context.Context, in HealthInput) (HealthResult, error) {
	doing := fmt.Sprintf("check health of %s/%s", in.Home, in.Companion)
	ctx, cancel := context.WithTimeout(ctx, shortStepStoreTimeout)
	defer cancel()
	var (
		home, companion              companionsync.Org
		spaces                       []string
		used                         int
		homeErr, compErr, dErr, uErr error
		wg                           sync.WaitGroup
	)
	wg.Go(func() { home, homeErr = a.org(ctx, in.Home) })
	wg.Go(func() { companion, compErr = a.org(ctx, in.Companion) })
	wg.Go(func() { spaces, dErr = a.Orgs.DataSpaces(ctx, in.Home) })
	wg.Go(func() { used, uErr = a.Orgs.CompanionCount(ctx, in.Home) })
	wg.Wait()
	if homeErr != nil {
		return HealthResult{}, a.shortStepError(ctx, homeErr, doing)
	}
	if compErr != nil {
		return HealthResult{}, a.shortStepError(ctx, compErr, doing)
	}
	if dErr != nil {
		return HealthResult{}, a.shortStepError(ctx, dErr, doing+": list data spaces")
	}
	if uErr != nil {
		return HealthResult{}, a.shortStepError(ctx, uErr, doing+": count companions")
	}
	res := healthOf(home, companion, spaces, used, a.now())
	if in.Watch {
		if err := a.watch(ctx, companionsync.Connection{Home: in.Home, Companion: in.Companion}, res); err != nil {
			return HealthResult{}, a.shortStepError(ctx, err, doing+": record what it saw for the fleet watcher")
		}
	}
	return res, nil
}

// healthOf is the health of the connection of home and companion at now,
// with the home's data spaces and its number of companions: what a health
// check and a sweep of the fleet watcher both report.
func healthOf(home, companion companionsync.Org, spaces []string, used int, now time.Time) HealthResult {
	var problems []string
	if expired(home, now) {
		problems = append(problems, fmt.Sprintf("the licence of home org %q expired at %s; renew it",
			home.ID, home.LicenceExpiresAt.UTC().Format(time.RFC3339)))
	}
	if !companion.Active {
		problems = append(problems, fmt.Sprintf("companion org %q is not active; reactivate it", companion.ID))
	}
	res := HealthResult{Healthy: len(problems) == 0, DataSpaces: spaces,
		Licence: contract.Licence{ExpiresAt: home.LicenceExpiresAt, CompanionsUsed: used, CompanionsMax: home.MaxCompanions}}
	if !res.Healthy {
		res.Reason = strings.Join(problems, "; ") + " (the next health check or a re-check restores the connection)"
	}
	return res
}

// shortStepError is the error of a short step's store call: an unreachable
// store fails it at once (storeDown), anything else as before.
func (a *Activities) shortStepError(ctx context.Context, err error, doing string) error {
	if a.shortStepOutage(ctx, err) {
		return storeDown(err, doing)
	}
	return fmt.Errorf("%s: %w", doing, err)
}

// org reads an org, turning a missing one into a non-retryable ErrUnknownOrg.
func (a *Activities) org(ctx context.Context, id string) (companionsync.Org, error) {
	o, err := a.Orgs.Org(ctx, id)
	if errors.Is(err, companionsync.ErrNotFound) {
		return companionsync.Org{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("org %q does not exist; check the org id", id), ErrUnknownOrg, err)
	}
	if err != nil {
		return companionsync.Org{}, fmt.Errorf("read org %q: %w", id, err)
	}
	return o, nil
}

// unknownDataSpace turns a missing data space (err wraps
// companionsync.ErrNotFound and names it) into a non-retryable
// ErrUnknownDataSpace, a fenced write into a non-retryable ErrFenced, and
// wraps other errors with context.
func unknownDataSpace(err error, doing string) error {
	if errors.Is(err, companionsync.ErrNotFound) {
		return temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("%s: %v; check the name against the home org's data spaces", doing, err),
			ErrUnknownDataSpace, nil)
	}
	if errors.Is(err, companionsync.ErrFenced) {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s: %v", doing, err), ErrFenced, nil)
	}
	return fmt.Errorf("%s: %w", doing, err)
}

// CopyRecords runs one chunk of the initial sync of a data space, as
// described on CopyInput. It copies batches in record-id order from the
// checkpoint (In.After, or the heartbeat details of an earlier attempt when
// they are further along), heartbeating a CopyProgress after each batch,
// until the data space is copied or In.Budget (if positive) has elapsed; a
// cancelled context stops it between batches with ctx.Err(). A failed batch
// fails the attempt with a retryable error (unless the data space is gone).
// When the last batch is copied it also copies the metadata snapshot and sets
// the metadata cursor, and returns Done.
func (a *Activities) CopyRecords(ctx context.Context, in CopyInput) (CopyProgress, error) {
	share := companionsync.Share{Home: in.Home, Companion: in.Companion, DataSpace: in.DataSpace, Fence: fenceToken(ctx)}
	doing := fmt.Sprintf("copy %s to %s", in.DataSpace, in.Companion)
	progress := CopyProgress{After: in.After}
	if activity.HasHeartbeatDetails(ctx) {
		var checkpoint CopyProgress
		if err := activity.GetHeartbeatDetails(ctx, &checkpoint); err == nil && checkpoint.After > progress.After {
			progress.After = checkpoint.After
		}
	}
	alive := startKeepAlive(ctx, progress)
	defer alive.close()
	// down ends the step waiting for an unreachable store.
	down := func(err error) (CopyProgress, error) {
		o, oerr := a.outage(in.UnavailableSince, err, doing)
		if oerr != nil {
			return progress, oerr
		}
		progress.Outage = o
		return progress, nil
	}
	counted := false
	count := func(ctx context.Context) error {
		total, err := a.Orgs.RecordCount(ctx, in.Home, in.DataSpace)
		if err != nil {
			return err
		}
		present, err := a.Orgs.CopiedCount(ctx, share)
		if err != nil {
			return err
		}
		progress.Copied, progress.Total, counted = present, total, true
		return nil
	}
	size := newBatchSizer(in.BatchSize, in.MaxBatchSize, in.Budget)
	start := a.now()
	for {
		if err := ctx.Err(); err != nil {
			return progress, err
		}
		var err error
		if !counted {
			err = count(ctx)
		}
		var batch companionsync.CopiedBatch
		if err == nil {
			began := a.now()
			batch, err = a.Orgs.CopyBatch(ctx, share, progress.After, size.n)
			size.took(a.now().Sub(began), err)
		}
		if a.unavailable(ctx, err) {
			if a.awaitStore(ctx, progress, count) {
				continue
			}
			return down(err)
		}
		if err != nil {
			return progress, unknownDataSpace(err, doing)
		}
		progress.After = batch.Last
		progress.Copied += batch.Added
		alive.set(progress)
		if !batch.More {
			break
		}
		activity.RecordHeartbeat(ctx, progress)
		if in.Budget > 0 && a.now().Sub(start) >= in.Budget {
			return progress, nil
		}
	}
	// Completing is idempotent: once the store is back, the wait's probe
	// completes it.
	complete := func(ctx context.Context) error { return a.Orgs.CompleteInitialSync(ctx, share) }
	if err := complete(ctx); a.unavailable(ctx, err) {
		if !a.awaitStore(ctx, progress, complete) {
			return down(err)
		}
	} else if err != nil {
		return progress, unknownDataSpace(err, doing+": complete")
	}
	progress.Done = true
	activity.RecordHeartbeat(ctx, progress)
	return progress, nil
}

// fenceToken is a copy or removal step's fencing token (see
// companionsync.Share.Fence): the time its workflow scheduled it, as the
// history records it, so every attempt of the step holds the same token and
// a step the workflow schedules later (the removal after it gave up on a
// copy, a new share's copy after a removal) holds a greater one.
func fenceToken(ctx context.Context) int64 {
	scheduled := activity.GetInfo(ctx).ScheduledTime
	if scheduled.IsZero() {
		return 0
	}
	return scheduled.UnixNano()
}

func batchSize(n int) int {
	if n <= 0 {
		return DefaultBatchSize
	}
	return n
}

// batchSizer sizes the batches of one copy or removal step. It starts at
// the connection's batch size, which is also the smallest batch, and
// doubles while a batch takes less than its target (an eighth of the step
// budget, 250 ms at most), up to maxBatchGrowth times the first; it halves
// when a batch takes more than twice the target. Each batch is one
// transaction: per-transaction costs (a commit, the fence, the batch's
// bounds) are then paid a few times a step, not thousands, and no
// transaction holds its locks longer than about twice the target.
type batchSizer struct {
	n, min, max int
	target      time.Duration
}

// maxBatchGrowth bounds how far a batch grows over the first.
const maxBatchGrowth = 128

func newBatchSizer(first, most int, budget time.Duration) *batchSizer {
	first = batchSize(first)
	switch {
	case most < 0:
		most = first // fixed batches
	case most == 0:
		most = first * maxBatchGrowth
	}
	target := 250 * time.Millisecond
	if budget > 0 {
		target = min(budget/8, target)
	}
	return &batchSizer{n: first, min: first, max: max(most, first), target: target}
}

// took adjusts the next batch after one that took d (err: it failed, and
// the next one is no bigger).
func (b *batchSizer) took(d time.Duration, err error) {
	switch {
	case err != nil || d > 2*b.target:
		b.n = max(b.n/2, b.min)
	case d < b.target:
		b.n = min(b.n*2, b.max)
	}
}

// RemoveRecords runs one chunk of the removal of a data space from the
// companion, as described on RemoveInput: batches of deletions, heartbeating
// a RemoveProgress after each, until nothing is left or In.Budget (if
// positive) has elapsed. When nothing is left it also removes the share's
// metadata copies, cursor and injected failures, and returns Done. It never
// touches another data space or another companion, and is idempotent.
func (a *Activities) RemoveRecords(ctx context.Context, in RemoveInput) (RemoveProgress, error) {
	share := companionsync.Share{Home: in.Home, Companion: in.Companion, DataSpace: in.DataSpace, Fence: fenceToken(ctx)}
	doing := fmt.Sprintf("remove %s from %s", in.DataSpace, in.Companion)
	var progress RemoveProgress
	alive := startKeepAlive(ctx, progress)
	defer alive.close()
	down := func(err error) (RemoveProgress, error) {
		o, oerr := a.outage(in.UnavailableSince, err, doing)
		if oerr != nil {
			return progress, oerr
		}
		progress.Outage = o
		return progress, nil
	}
	counted := false
	count := func(ctx context.Context) error {
		present, err := a.Orgs.CopiedCount(ctx, share)
		if err == nil {
			progress.Remaining, counted = max(present, 0), true
		}
		return err
	}
	size := newBatchSizer(in.BatchSize, in.MaxBatchSize, in.Budget)
	start := a.now()
	for {
		if err := ctx.Err(); err != nil {
			return progress, err
		}
		var err error
		if !counted {
			err = count(ctx)
		}
		var removed int
		more := true
		if err == nil {
			began := a.now()
			removed, more, err = a.Orgs.RemoveBatch(ctx, share, size.n)
			size.took(a.now().Sub(began), err)
		}
		if a.unavailable(ctx, err) {
			if a.awaitStore(ctx, progress, count) {
				continue
			}
			return down(err)
		}
		if err != nil {
			return progress, unknownDataSpace(err, doing)
		}
		progress.Removed += removed
		progress.Remaining = max(progress.Remaining-removed, 0)
		alive.set(progress)
		if !more {
			progress.Remaining = 0
			break
		}
		activity.RecordHeartbeat(ctx, progress)
		if in.Budget > 0 && a.now().Sub(start) >= in.Budget {
			return progress, nil
		}
	}
	complete := func(ctx context.Context) error { return a.Orgs.CompleteRemoval(ctx, share) }
	if err := complete(ctx); a.unavailable(ctx, err) {
		if !a.awaitStore(ctx, progress, complete) {
			return down(err)
		}
	} else if err != nil {
		return progress, unknownDataSpace(err, doing+": complete")
	}
	progress.Done = true
	return progress, nil
}

// CountPendingMetadata counts the changes not yet applied to the companion
// in the given data spaces (those not yet initially synced count nothing) and
// the highest sequence among them, which bounds the next round.
func (a *Activities) CountPendingMetadata(ctx context.Context, in PendingInput) (PendingResult, error) {
	conn := companionsync.Connection{Home: in.Home, Companion: in.Companion}
	doing := fmt.Sprintf("count pending metadata of %s/%s", in.Home, in.Companion)
	ctx, cancel := context.WithTimeout(ctx, shortStepStoreTimeout)
	defer cancel()
	n, upTo, err := a.Orgs.PendingChanges(ctx, conn, in.DataSpaces)
	if a.shortStepOutage(ctx, err) {
		return PendingResult{}, storeDown(err, doing)
	}
	if err != nil {
		return PendingResult{}, unknownDataSpace(err, doing)
	}
	if w := a.watches(); in.Watch && w != nil {
		err := w.WatchMetadata(ctx, conn, in.DataSpaces, n == 0)
		if a.shortStepOutage(ctx, err) {
			return PendingResult{}, storeDown(err, doing)
		}
		if err != nil {
			return PendingResult{}, fmt.Errorf("%s: record for the fleet watcher: %w", doing, err)
		}
	}
	return PendingResult{Changes: n, UpTo: upTo}, nil
}

// ApplyMetadata runs one metadata round: it applies, in sequence order, each
// unapplied change up to In.UpTo exactly once (the cursor advances in the
// same transaction as the change, so a retried round skips what was applied).
// At the first change that conflicts with a companion-side edit or local
// object, or is invalid (unknown object kind, or a definition that is not a
// JSON object), it stops, checks the remaining changes up to In.UpTo without
// applying them, writes one error-log entry per failing change (idempotent
// per In.Round and sequence), and fails with a non-retryable
// ErrMetadataConflict or ErrMetadataInvalid error (after the first failure)
// whose details are the ApplyResult. Applied counts the changes applied by
// this attempt.
func (a *Activities) ApplyMetadata(ctx context.Context, in ApplyInput) (ApplyResult, error) {
	conn := companionsync.Connection{Home: in.Home, Companion: in.Companion}
	doing := fmt.Sprintf("apply metadata round %q of %s/%s", in.Round, in.Home, in.Companion)
	changes, err := a.Orgs.Changes(ctx, conn, in.DataSpaces, in.UpTo)
	if err != nil {
		return ApplyResult{}, unknownDataSpace(err, doing)
	}
	locals, err := a.Orgs.LocalObjects(ctx, conn, in.DataSpaces)
	if err != nil {
		return ApplyResult{}, fmt.Errorf("%s: read companion objects: %w", doing, err)
	}
	guard := newGuard(in.Companion, locals)

	var res ApplyResult
	for i, ch := range changes {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if f, failed := guard.check(ch); failed {
			res.Failures = append([]ErrorLogEntry{a.entry(ch, f)}, guard.scan(a, changes[i+1:])...)
			return res, a.stopRound(ctx, conn, in.Round, res, doing)
		}
		applied, err := a.Orgs.ApplyChange(ctx, conn, ch)
		if errors.Is(err, companionsync.ErrConflict) {
			// A local edit made after LocalObjects was read.
			guard.edited(ch)
			f := failure{kind: KindConflict, msg: conflictMessage(in.Companion, ch, true)}
			res.Failures = append([]ErrorLogEntry{a.entry(ch, f)}, guard.scan(a, changes[i+1:])...)
			return res, a.stopRound(ctx, conn, in.Round, res, doing)
		}
		if err != nil {
			return res, fmt.Errorf("%s: change %d: %w", doing, ch.Sequence, err)
		}
		if applied {
			res.Applied++
		}
		activity.RecordHeartbeat(ctx, res.Applied)
	}
	return res, nil
}

// stopRound logs the failures of a round and returns the error that ends it.
func (a *Activities) stopRound(ctx context.Context, conn companionsync.Connection, round string, res ApplyResult, doing string) error {
	if err := a.Orgs.LogErrors(ctx, conn, round, res.Failures); err != nil {
		return fmt.Errorf("%s: write error log: %w", doing, err)
	}
	first := res.Failures[0]
	typ := ErrMetadataConflict
	if first.Kind == KindInvalid {
		typ = ErrMetadataInvalid
	}
	msg := fmt.Sprintf("%s: stopped at change %d after applying %d: %s (%d failing change(s) in the error log)",
		doing, first.Sequence, res.Applied, first.Message, len(res.Failures))
	return temporal.NewNonRetryableApplicationError(msg, typ, nil, res)
}

func (a *Activities) entry(ch companionsync.Change, f failure) ErrorLogEntry {
	return ErrorLogEntry{
		Sequence: ch.Sequence, DataSpace: ch.DataSpace, Object: ch.Object,
		Kind: f.kind, Message: f.msg, At: a.now().UTC(),
	}
}

type failure struct{ kind, msg string }

// guard decides which changes of a round fail.
type guard struct {
	companion string
	local     map[[2]string]bool // (data space, name) -> edited synced copy
}

func newGuard(companion string, locals []companionsync.LocalObject) *guard {
	g := &guard{companion: companion, local: make(map[[2]string]bool, len(locals))}
	for _, o := range locals {
		g.local[[2]string{o.DataSpace, o.Name}] = o.Edited
	}
	return g
}

func (g *guard) edited(ch companionsync.Change) { g.local[[2]string{ch.DataSpace, ch.Object}] = true }

// check reports whether ch fails, and why.
func (g *guard) check(ch companionsync.Change) (failure, bool) {
	if edited, ok := g.local[[2]string{ch.DataSpace, ch.Object}]; ok {
		return failure{kind: KindConflict, msg: conflictMessage(g.companion, ch, edited)}, true
	}
	if msg := invalidity(ch); msg != "" {
		return failure{kind: KindInvalid, msg: msg}, true
	}
	return failure{}, false
}

// scan returns an error-log entry for every failing change of rest.
func (g *guard) scan(a *Activities, rest []companionsync.Change) []ErrorLogEntry {
	var out []ErrorLogEntry
	for _, ch := range rest {
		if f, failed := g.check(ch); failed {
			out = append(out, a.entry(ch, f))
		}
	}
	return out
}

func conflictMessage(companion string, ch companionsync.Change, edited bool) string {
	if edited {
		return fmt.Sprintf("companion org %q holds a local edit of %s %q in data space %q; discard the local edit, then resume metadata sync",
			companion, ch.ObjectKind, ch.Object, ch.DataSpace)
	}
	return fmt.Sprintf("companion org %q has a local object named %q in data space %q, the name of a synced %s; rename or delete the local object, then resume metadata sync",
		companion, ch.Object, ch.DataSpace, ch.ObjectKind)
}

// invalidity returns why ch cannot be applied, or "" when it can.
func invalidity(ch companionsync.Change) string {
	switch ch.ObjectKind {
	case companionsync.ObjectDMO, companionsync.ObjectCalculatedInsight, companionsync.ObjectSegment:
	default:
		return fmt.Sprintf("change %d of %q in data space %q has unknown object kind %q (want %s, %s or %s); publish a corrected version in the home org",
			ch.Sequence, ch.Object, ch.DataSpace, ch.ObjectKind, companionsync.ObjectDMO, companionsync.ObjectCalculatedInsight, companionsync.ObjectSegment)
	}
	var def map[string]any
	if err := json.Unmarshal([]byte(ch.Definition), &def); err != nil || def == nil {
		reason := "it is not a JSON object"
		if strings.TrimSpace(ch.Definition) == "" {
			reason = "it is empty"
		}
		return fmt.Sprintf("change %d of %s %q in data space %q has an invalid definition (%s); publish a corrected version in the home org",
			ch.Sequence, ch.ObjectKind, ch.Object, ch.DataSpace, reason)
	}
	return ""
}

// RecordSyncFailure writes one error-log entry of kind "failed" (sequence 0)
// for a round that failed for another reason than its changes. It is
// idempotent per In.Round.
func (a *Activities) RecordSyncFailure(ctx context.Context, in RecordFailureInput) error {
	conn := companionsync.Connection{Home: in.Home, Companion: in.Companion}
	entry := ErrorLogEntry{Kind: KindFailed, Message: in.Message, At: a.now().UTC()}
	if err := a.Orgs.LogErrors(ctx, conn, in.Round, []ErrorLogEntry{entry}); err != nil {
		return fmt.Errorf("record failure of metadata round %q of %s/%s: %w", in.Round, in.Home, in.Companion, err)
	}
	return nil
}

// Disconnect deregisters the connection so the companion may join a home org
// again. It is idempotent.
func (a *Activities) Disconnect(ctx context.Context, in DisconnectInput) error {
	if err := a.Orgs.Deregister(ctx, in.Home, in.Companion); err != nil {
		return fmt.Errorf("disconnect %s/%s: %w", in.Home, in.Companion, err)
	}
	if w := a.watches(); w != nil {
		if err := w.Unwatch(ctx, companionsync.Connection{Home: in.Home, Companion: in.Companion}); err != nil {
			return fmt.Errorf("disconnect %s/%s: %w", in.Home, in.Companion, err)
		}
	}
	return nil
}
