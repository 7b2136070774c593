package activities_test

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"

	"github.com/companionsync/companionsync"
	"github.com/companionsync/companionsync/activities"
	"github.com/companionsync/companionsync/orgstore"
)

// quiet drops the SDK's logs of the expected activity failures.
var quiet = log.NewStructuredLogger(slog.New(slog.DiscardHandler))

// seedRecords sizes each test's `default` data spaces; the others get a tenth.
const seedRecords = 3000

// openStore opens a seeded store in a fresh temporary directory.
func openStore(t *testing.T) *orgstore.Store {
	t.Helper()
	ctx := context.Background()
	s, err := orgstore.Open(ctx, filepath.Join(t.TempDir(), "orgs.db"))
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	require.NoError(t, s.Demo().Seed(ctx, orgstore.SeedOptions{RecordsPerDataSpace: seedRecords}))
	return s
}

// newEnv returns an activity test environment running acts.
func newEnv(t *testing.T, acts *activities.Activities) *testsuite.TestActivityEnvironment {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(quiet)
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivity(acts)
	return env
}

// execute runs one activity in env and decodes its result.
func execute[T any](t *testing.T, env *testsuite.TestActivityEnvironment, fn any, in any) (T, error) {
	t.Helper()
	var out T
	val, err := env.ExecuteActivity(fn, in)
	if err != nil {
		return out, err
	}
	require.NoError(t, val.Get(&out))
	return out, nil
}

// applicationError returns the application error in err, failing the test
// when there is none.
func applicationError(t *testing.T, err error) *temporal.ApplicationError {
	t.Helper()
	var appErr *temporal.ApplicationError
	require.Error(t, err)
	require.True(t, errors.As(err, &appErr), "want an application error, got %v", err)
	return appErr
}

// connect runs a successful handshake of home/companion.
func connect(t *testing.T, acts *activities.Activities, home, companion string) {
	t.Helper()
	_, err := execute[activities.HandshakeResult](t, newEnv(t, acts), acts.Handshake,
		activities.HandshakeInput{Home: home, Companion: companion, Token: "wf-" + home + "-" + companion})
	require.NoError(t, err)
}

// syncAll runs the initial sync of a share to completion.
func syncAll(t *testing.T, acts *activities.Activities, home, companion, dataSpace string) activities.CopyProgress {
	t.Helper()
	p, err := execute[activities.CopyProgress](t, newEnv(t, acts), acts.CopyRecords,
		activities.CopyInput{Home: home, Companion: companion, DataSpace: dataSpace, BatchSize: 250})
	require.NoError(t, err)
	require.True(t, p.Done)
	return p
}

// assertSameRecords compares row count and checksum of home and companion.
func assertSameRecords(t *testing.T, s *orgstore.Store, home, companion, dataSpace string) {
	t.Helper()
	ctx := context.Background()
	want, err := s.Demo().CountRecords(ctx, home, dataSpace)
	require.NoError(t, err)
	got, err := s.Demo().CompanionRecordCount(ctx, home, companion, dataSpace)
	require.NoError(t, err)
	assert.Equal(t, want, got, "records of %s/%s in %s", home, dataSpace, companion)
	wantSum, err := s.Demo().RecordChecksum(ctx, home, dataSpace)
	require.NoError(t, err)
	gotSum, err := s.Demo().CompanionChecksum(ctx, home, companion, dataSpace)
	require.NoError(t, err)
	assert.Equal(t, wantSum, gotSum, "checksum of %s/%s in %s", home, dataSpace, companion)
}

func TestHandshakeRefusesEachRule(t *testing.T) {
	later := time.Now().AddDate(2, 0, 0)
	tests := []struct {
		name      string
		home      string
		companion string
		now       time.Time
		setup     func(t *testing.T, s *orgstore.Store, acts *activities.Activities)
		rule      string
		message   string
	}{
		{name: "unknown home", home: "nope", companion: "acme-emea",
			rule: activities.RuleHomeExists, message: `home org "nope" does not exist`},
		{name: "home is a companion", home: "acme-apac", companion: "acme-emea",
			rule: activities.RuleHomeExists, message: `org "acme-apac" is not a home org`},
		{name: "unknown companion", home: "acme", companion: "nope",
			rule: activities.RuleCompanionExists, message: `companion org "nope" does not exist`},
		{name: "companion is a home", home: "acme", companion: "globex",
			rule: activities.RuleCompanionNotHome, message: `org "globex" is a home org and cannot be a companion`},
		{name: "companion inactive", home: "acme", companion: "acme-old",
			rule: activities.RuleCompanionActive, message: `companion org "acme-old" is not active; reactivate it`},
		{name: "sandbox to production", home: "acme", companion: "acme-sbx",
			rule: activities.RuleSameKind, message: "a sandbox cannot connect to production"},
		{name: "licence expired", home: "acme", companion: "acme-emea", now: later,
			rule: activities.RuleHomeLicenceValid, message: `the licence of home org "acme" expired`},
		{name: "companion of another home", home: "acme", companion: "globex-emea",
			rule: activities.RuleCompanionUnconnected, message: `already a companion of "globex"`},
		{name: "companion of this home in another connection", home: "acme", companion: "acme-emea",
			setup: func(t *testing.T, s *orgstore.Store, acts *activities.Activities) {
				connect(t, acts, "acme", "acme-emea")
			},
			rule: activities.RuleCompanionUnconnected, message: `already a companion of "acme" in another connection`},
		{name: "home at its companion limit", home: "globex", companion: "acme-apac",
			setup: func(t *testing.T, s *orgstore.Store, acts *activities.Activities) {
				connect(t, acts, "globex", "acme-emea")
			},
			rule: activities.RuleHomeUnderCompanionMax, message: `home org "globex" already has its maximum of 2 companion connections`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openStore(t)
			acts := &activities.Activities{Orgs: s}
			if !tt.now.IsZero() {
				acts.Now = func() time.Time { return tt.now }
			}
			if tt.setup != nil {
				tt.setup(t, s, acts)
			}
			before, beforeErr := s.ConnectionOf(context.Background(), tt.companion)

			_, err := execute[activities.HandshakeResult](t, newEnv(t, acts), acts.Handshake,
				activities.HandshakeInput{Home: tt.home, Companion: tt.companion, Token: "another-workflow"})

			appErr := applicationError(t, err)
			assert.Equal(t, activities.ErrIneligible, appErr.Type())
			assert.True(t, appErr.NonRetryable())
			var why activities.Ineligibility
			require.NoError(t, appErr.Details(&why))
			assert.Equal(t, tt.rule, why.Rule)
			assert.Contains(t, why.Message, tt.message)
			assert.Contains(t, appErr.Error(), tt.rule)
			after, afterErr := s.ConnectionOf(context.Background(), tt.companion)
			assert.Equal(t, before, after, "a refused handshake must leave the registry alone")
			assert.Equal(t, beforeErr == nil, afterErr == nil)
		})
	}
}

func TestHandshakeIsIdempotentForTheSameToken(t *testing.T) {
	s := openStore(t)
	acts := &activities.Activities{Orgs: s}
	in := activities.HandshakeInput{Home: "acme", Companion: "acme-emea", Token: "wf-1"}
	for attempt := 1; attempt <= 2; attempt++ {
		res, err := execute[activities.HandshakeResult](t, newEnv(t, acts), acts.Handshake, in)
		require.NoError(t, err, "attempt %d", attempt)
		assert.Equal(t, []string{"default", "marketing", "sales"}, res.DataSpaces)
	}
	conn, err := s.ConnectionOf(context.Background(), "acme-emea")
	require.NoError(t, err)
	assert.Equal(t, companionsync.Connection{Home: "acme", Companion: "acme-emea", Token: "wf-1"}, conn)

	require.NoError(t, (&activities.Activities{Orgs: s}).Disconnect(context.Background(),
		activities.DisconnectInput{Home: "acme", Companion: "acme-emea"}))
	require.NoError(t, acts.Disconnect(context.Background(), activities.DisconnectInput{Home: "acme", Companion: "acme-emea"}),
		"disconnect must be idempotent")
	_, err = s.ConnectionOf(context.Background(), "acme-emea")
	assert.ErrorIs(t, err, companionsync.ErrNotFound)
}

func TestCheckHealth(t *testing.T) {
	tests := []struct {
		name    string
		now     time.Time
		setup   func(t *testing.T, s *orgstore.Store)
		healthy bool
		reason  []string
	}{
		{name: "healthy", healthy: true},
		{name: "licence expired", now: time.Now().AddDate(2, 0, 0),
			reason: []string{`the licence of home org "acme" expired`, "renew it"}},
		{name: "companion inactive",
			setup: func(t *testing.T, s *orgstore.Store) {
				require.NoError(t, s.Demo().Deactivate(context.Background(), "acme-emea"))
			},
			reason: []string{`companion org "acme-emea" is not active; reactivate it`}},
		{name: "licence renewed after expiry",
			setup: func(t *testing.T, s *orgstore.Store) {
				require.NoError(t, s.Demo().ExpireLicence(context.Background(), "acme"))
				require.NoError(t, s.Demo().RenewLicence(context.Background(), "acme"))
			},
			healthy: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openStore(t)
			acts := &activities.Activities{Orgs: s}
			if !tt.now.IsZero() {
				acts.Now = func() time.Time { return tt.now }
			}
			if tt.setup != nil {
				tt.setup(t, s)
			}
			res, err := execute[activities.HealthResult](t, newEnv(t, acts), acts.CheckHealth,
				activities.HealthInput{Home: "acme", Companion: "acme-emea"})
			require.NoError(t, err)
			assert.Equal(t, tt.healthy, res.Healthy)
			assert.Equal(t, []string{"default", "marketing", "sales"}, res.DataSpaces)
			if tt.healthy {
				assert.Empty(t, res.Reason)
			}
			for _, r := range tt.reason {
				assert.Contains(t, res.Reason, r)
			}
		})
	}
}

// recordingOrgs wraps the store to observe or disturb the activities.
type recordingOrgs struct {
	companionsync.Orgs
	mu sync.Mutex
	// afters are the checkpoints CopyBatch was called with, and limits
	// the batch sizes.
	afters []string
	limits []int
	// cancelAfter cancels cancel after that many CopyBatch calls (0: never).
	cancelAfter int
	cancel      context.CancelFunc
	// failCopies fails that many CopyBatch calls, copying nothing.
	failCopies int
	// failApplyAfter fails ApplyChange once after that many applied changes.
	failApplyAfter int
	applied        int
	failed         bool
}

var _ companionsync.Orgs = (*recordingOrgs)(nil)

func (r *recordingOrgs) CopyBatch(ctx context.Context, s companionsync.Share, after string, limit int) (companionsync.CopiedBatch, error) {
	r.mu.Lock()
	if r.failCopies > 0 {
		r.failCopies--
		r.mu.Unlock()
		return companionsync.CopiedBatch{}, errors.New("transient failure of the store")
	}
	r.mu.Unlock()
	b, err := r.Orgs.CopyBatch(ctx, s, after, limit)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.afters = append(r.afters, after)
	r.limits = append(r.limits, limit)
	if r.cancelAfter > 0 && len(r.afters) == r.cancelAfter {
		r.cancel()
	}
	return b, err
}

func (r *recordingOrgs) ApplyChange(ctx context.Context, c companionsync.Connection, ch companionsync.Change) (bool, error) {
	r.mu.Lock()
	if r.failApplyAfter > 0 && r.applied == r.failApplyAfter && !r.failed {
		r.failed = true
		r.mu.Unlock()
		return false, errors.New("database went away")
	}
	r.mu.Unlock()
	ok, err := r.Orgs.ApplyChange(ctx, c, ch)
	if ok {
		r.mu.Lock()
		r.applied++
		r.mu.Unlock()
	}
	return ok, err
}

func TestInitialSyncResumesFromCheckpointAfterCancellation(t *testing.T) {
	s := openStore(t)
	connect(t, &activities.Activities{Orgs: s}, "acme", "acme-emea")
	in := activities.CopyInput{Home: "acme", Companion: "acme-emea", DataSpace: "default", BatchSize: 100}

	// First attempt: cancelled (a worker shutting down) after 3 batches
	// (they grow: 100, then 200 and 400 while they are quick).
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first := &recordingOrgs{Orgs: s, cancelAfter: 3, cancel: cancel}
	acts := &activities.Activities{Orgs: first}
	env := newEnv(t, acts)
	env.SetWorkerOptions(worker.Options{BackgroundActivityContext: ctx})
	var (
		mu         sync.Mutex
		checkpoint activities.CopyProgress
	)
	env.SetOnActivityHeartbeatListener(func(_ *activity.Info, details converter.EncodedValues) {
		var p activities.CopyProgress
		if details.Get(&p) == nil {
			mu.Lock()
			checkpoint = p
			mu.Unlock()
		}
	})
	_, err := execute[activities.CopyProgress](t, env, acts.CopyRecords, in)
	require.Error(t, err, "the cancelled attempt must fail")
	assert.Len(t, first.afters, 3, "the attempt must stop at the first batch boundary after cancellation")
	copied, err := s.Demo().CompanionRecordCount(context.Background(), "acme", "acme-emea", "default")
	require.NoError(t, err)
	sum := 0
	for _, n := range first.limits {
		sum += n
	}
	require.Equal(t, sum, copied, "the batches of %v, and nothing after them", first.limits)
	require.Less(t, copied, seedRecords)

	mu.Lock()
	require.NotEmpty(t, checkpoint.After, "the first attempt must have heartbeated a checkpoint")
	require.Less(t, checkpoint.Copied, seedRecords)
	resumeFrom := checkpoint
	mu.Unlock()

	// Retry: resumes from the heartbeat checkpoint, not from In.After.
	second := &recordingOrgs{Orgs: s}
	acts = &activities.Activities{Orgs: second}
	env = newEnv(t, acts)
	env.SetHeartbeatDetails(resumeFrom)
	p, err := execute[activities.CopyProgress](t, env, acts.CopyRecords, in)
	require.NoError(t, err)
	require.NotEmpty(t, second.afters)
	assert.Equal(t, resumeFrom.After, second.afters[0], "the retry must start at the checkpoint")
	assert.True(t, p.Done)
	assert.Equal(t, seedRecords, p.Copied)
	assert.Equal(t, seedRecords, p.Total)
	assertSameRecords(t, s, "acme", "acme-emea", "default")

	// The metadata snapshot and cursor were set when the last batch was done.
	objects, err := s.Demo().CompanionMetadata(context.Background(), "acme", "acme-emea", "default")
	require.NoError(t, err)
	assert.Len(t, objects, 5)
	_, synced, err := s.Demo().MetadataCursor(context.Background(), "acme", "acme-emea", "default")
	require.NoError(t, err)
	assert.True(t, synced)
}

func TestInitialSyncInChunks(t *testing.T) {
	s := openStore(t)
	clock := time.Now()
	acts := &activities.Activities{Orgs: s, Now: func() time.Time { clock = clock.Add(time.Second); return clock }}
	in := activities.CopyInput{Home: "acme", Companion: "acme-apac", DataSpace: "marketing", BatchSize: 100, Budget: time.Second}
	var chunks int
	for {
		p, err := execute[activities.CopyProgress](t, newEnv(t, acts), acts.CopyRecords, in)
		require.NoError(t, err)
		chunks++
		require.LessOrEqual(t, chunks, 10, "the sync must progress")
		if p.Done {
			break
		}
		assert.Equal(t, chunks*100, p.Copied, "one batch per chunk when the budget is spent")
		in.After = p.After
	}
	assert.Equal(t, 3, chunks)
	assertSameRecords(t, s, "acme", "acme-apac", "marketing")
}

func TestInitialSyncFailures(t *testing.T) {
	t.Run("failed batches are transient", func(t *testing.T) {
		s := openStore(t)
		acts := &activities.Activities{Orgs: &recordingOrgs{Orgs: s, failCopies: 2}}
		in := activities.CopyInput{Home: "acme", Companion: "acme-emea", DataSpace: "sales"}
		for range 2 {
			_, err := execute[activities.CopyProgress](t, newEnv(t, acts), acts.CopyRecords, in)
			require.Error(t, err)
			assert.Contains(t, err.Error(), "copy sales to acme-emea: transient failure of the store")
			var appErr *temporal.ApplicationError
			if errors.As(err, &appErr) {
				assert.False(t, appErr.NonRetryable())
			}
		}
		p, err := execute[activities.CopyProgress](t, newEnv(t, acts), acts.CopyRecords, in)
		require.NoError(t, err)
		assert.True(t, p.Done)
		assertSameRecords(t, s, "acme", "acme-emea", "sales")
	})
	t.Run("unknown data space is not retryable", func(t *testing.T) {
		s := openStore(t)
		acts := &activities.Activities{Orgs: s}
		_, err := execute[activities.CopyProgress](t, newEnv(t, acts), acts.CopyRecords,
			activities.CopyInput{Home: "acme", Companion: "acme-emea", DataSpace: "finance"})
		appErr := applicationError(t, err)
		assert.Equal(t, activities.ErrUnknownDataSpace, appErr.Type())
		assert.True(t, appErr.NonRetryable())
		assert.Contains(t, appErr.Error(), `data space "finance" of home org "acme": not found; check the name`)
	})
}

func TestRemoveRecordsTouchesOnlyItsShare(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	// With demo faults, so the sync after the removal shows the injected
	// failures went with the share.
	acts := &activities.Activities{Orgs: orgstore.WithDemoFaults(s)}
	connect(t, acts, "acme", "acme-emea")
	connect(t, acts, "acme", "acme-apac")
	syncAll(t, acts, "acme", "acme-emea", "default")
	syncAll(t, acts, "acme", "acme-emea", "marketing")
	syncAll(t, acts, "acme", "acme-apac", "default")
	require.NoError(t, s.Demo().InjectCopyFailures(ctx, "acme", "acme-emea", "default", 3))

	var removed int
	for i := 0; ; i++ {
		require.Less(t, i, 100, "removal must progress")
		p, err := execute[activities.RemoveProgress](t, newEnv(t, acts), acts.RemoveRecords,
			activities.RemoveInput{Home: "acme", Companion: "acme-emea", DataSpace: "default", BatchSize: 400})
		require.NoError(t, err)
		removed += p.Removed
		if p.Done {
			assert.Zero(t, p.Remaining)
			break
		}
	}
	assert.Equal(t, seedRecords, removed)

	n, err := s.Demo().CompanionRecordCount(ctx, "acme", "acme-emea", "default")
	require.NoError(t, err)
	assert.Zero(t, n)
	objects, err := s.Demo().CompanionMetadata(ctx, "acme", "acme-emea", "default")
	require.NoError(t, err)
	assert.Empty(t, objects)
	_, synced, err := s.Demo().MetadataCursor(ctx, "acme", "acme-emea", "default")
	require.NoError(t, err)
	assert.False(t, synced)
	// The injected failures went with the share: a new sync succeeds at once.
	syncAll(t, acts, "acme", "acme-emea", "default")
	assertSameRecords(t, s, "acme", "acme-emea", "default")

	// Untouched: the other data space of the companion and the other companion.
	assertSameRecords(t, s, "acme", "acme-emea", "marketing")
	assertSameRecords(t, s, "acme", "acme-apac", "default")
	objects, err = s.Demo().CompanionMetadata(ctx, "acme", "acme-apac", "default")
	require.NoError(t, err)
	assert.Len(t, objects, 5)
}

// versions returns the companion's synced version of each object.
func versions(t *testing.T, s *orgstore.Store, home, companion, dataSpace string) map[string]int {
	t.Helper()
	objects, err := s.Demo().CompanionMetadata(context.Background(), home, companion, dataSpace)
	require.NoError(t, err)
	out := map[string]int{}
	for _, o := range objects {
		out[o.Name] = o.Version
	}
	return out
}

func pending(t *testing.T, acts *activities.Activities, home, companion string, dataSpaces ...string) activities.PendingResult {
	t.Helper()
	res, err := execute[activities.PendingResult](t, newEnv(t, acts), acts.CountPendingMetadata,
		activities.PendingInput{Home: home, Companion: companion, DataSpaces: dataSpaces})
	require.NoError(t, err)
	return res
}

func TestApplyMetadataExactlyOnceAcrossRetriedRound(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	acts := &activities.Activities{Orgs: s}
	connect(t, acts, "acme", "acme-emea")
	syncAll(t, acts, "acme", "acme-emea", "default")
	syncAll(t, acts, "acme", "acme-emea", "sales")
	assert.Equal(t, activities.PendingResult{}, pending(t, acts, "acme", "acme-emea", "default", "sales"),
		"the snapshot of the initial sync leaves nothing pending")

	_, err := s.Demo().ChangeMetadata(ctx, "acme", "default", 7) // every object +1, Account and Contact +2
	require.NoError(t, err)
	upTo, err := s.Demo().ChangeMetadata(ctx, "acme", "sales", 3)
	require.NoError(t, err)
	_, err = s.Demo().ChangeMetadata(ctx, "acme", "marketing", 2) // not shared: never counted
	require.NoError(t, err)
	p := pending(t, acts, "acme", "acme-emea", "default", "sales")
	assert.Equal(t, activities.PendingResult{Changes: 10, UpTo: upTo}, p)

	flaky := &recordingOrgs{Orgs: s, failApplyAfter: 4}
	retried := &activities.Activities{Orgs: flaky}
	in := activities.ApplyInput{Home: "acme", Companion: "acme-emea", DataSpaces: []string{"default", "sales"}, UpTo: p.UpTo, Round: "round-1"}
	_, err = execute[activities.ApplyResult](t, newEnv(t, retried), retried.ApplyMetadata, in)
	require.Error(t, err, "the first attempt fails mid-round")
	assert.Equal(t, 6, pending(t, acts, "acme", "acme-emea", "default", "sales").Changes)

	res, err := execute[activities.ApplyResult](t, newEnv(t, retried), retried.ApplyMetadata, in)
	require.NoError(t, err)
	assert.Equal(t, 6, res.Applied, "the retry applies only what the first attempt did not")
	res, err = execute[activities.ApplyResult](t, newEnv(t, retried), retried.ApplyMetadata, in)
	require.NoError(t, err)
	assert.Zero(t, res.Applied, "a replayed round applies nothing")
	assert.Equal(t, 10, flaky.applied, "each change applied exactly once")

	assert.Equal(t, map[string]int{"Account": 3, "Contact": 3, "HighValueCustomers": 2, "LifetimeValue": 2, "Order": 2},
		versions(t, s, "acme", "acme-emea", "default"))
	assert.Equal(t, map[string]int{"Opportunity": 2, "PipelineValue": 2, "TopAccounts": 2},
		versions(t, s, "acme", "acme-emea", "sales"))
	assert.Equal(t, activities.PendingResult{}, pending(t, acts, "acme", "acme-emea", "default", "sales"))
}

func TestApplyMetadataStopsAtFailures(t *testing.T) {
	t.Run("conflicts", func(t *testing.T) {
		s := openStore(t)
		ctx := context.Background()
		acts := &activities.Activities{Orgs: s}
		connect(t, acts, "acme", "acme-emea")
		syncAll(t, acts, "acme", "acme-emea", "default")
		// Changes, in order: 1 HighValueCustomers (applies), 2 Account (local
		// edit), 3 LifetimeValue (local object), 4 Order, 5 Account.
		_, err := s.Demo().PublishMetadata(ctx, "acme", "default", "HighValueCustomers", companionsync.ObjectSegment, `{"rev":2}`)
		require.NoError(t, err)
		object, err := s.Demo().MakeConflict(ctx, "acme", "acme-emea", "default")
		require.NoError(t, err)
		require.Equal(t, "Account", object)
		require.NoError(t, s.Demo().CreateLocalObject(ctx, "acme", "acme-emea", "default", "LifetimeValue", companionsync.ObjectCalculatedInsight))
		_, err = s.Demo().PublishMetadata(ctx, "acme", "default", "LifetimeValue", companionsync.ObjectCalculatedInsight, `{"rev":2}`)
		require.NoError(t, err)
		_, err = s.Demo().PublishMetadata(ctx, "acme", "default", "Order", companionsync.ObjectDMO, `{"rev":2}`)
		require.NoError(t, err)
		_, err = s.Demo().PublishMetadata(ctx, "acme", "default", "Account", companionsync.ObjectDMO, `{"rev":4}`)
		require.NoError(t, err)
		p := pending(t, acts, "acme", "acme-emea", "default")
		require.Equal(t, 5, p.Changes)
		before := versions(t, s, "acme", "acme-emea", "default")

		in := activities.ApplyInput{Home: "acme", Companion: "acme-emea", DataSpaces: []string{"default"}, UpTo: p.UpTo, Round: "round-7"}
		for attempt := 1; attempt <= 2; attempt++ {
			_, err = execute[activities.ApplyResult](t, newEnv(t, acts), acts.ApplyMetadata, in)
			appErr := applicationError(t, err)
			assert.Equal(t, activities.ErrMetadataConflict, appErr.Type())
			assert.True(t, appErr.NonRetryable())
			var res activities.ApplyResult
			require.NoError(t, appErr.Details(&res))
			if attempt == 1 {
				assert.Equal(t, 1, res.Applied)
			}
			require.Len(t, res.Failures, 3)
			assert.Equal(t, []string{"Account", "LifetimeValue", "Account"},
				[]string{res.Failures[0].Object, res.Failures[1].Object, res.Failures[2].Object})
			assert.Contains(t, res.Failures[0].Message, `holds a local edit of dmo "Account"`)
			assert.Contains(t, res.Failures[1].Message, `has a local object named "LifetimeValue"`)
		}
		// Nothing past the first failure was applied, not even the valid Order change.
		after := versions(t, s, "acme", "acme-emea", "default")
		assert.Equal(t, before["HighValueCustomers"]+1, after["HighValueCustomers"])
		delete(before, "HighValueCustomers")
		delete(after, "HighValueCustomers")
		assert.Equal(t, before, after)
		assert.Equal(t, 4, pending(t, acts, "acme", "acme-emea", "default").Changes)

		log, err := s.Demo().ErrorLog(ctx, "acme", "acme-emea")
		require.NoError(t, err)
		require.Len(t, log, 3, "one entry per failed change, not repeated by the retried round")
		for _, e := range log {
			assert.Equal(t, activities.KindConflict, e.Kind)
			assert.Equal(t, "default", e.DataSpace)
		}

		resolved, err := s.Demo().ResolveConflicts(ctx, "acme", "acme-emea")
		require.NoError(t, err)
		assert.Equal(t, 2, resolved)
		in.Round = "round-8"
		res, err := execute[activities.ApplyResult](t, newEnv(t, acts), acts.ApplyMetadata, in)
		require.NoError(t, err)
		assert.Equal(t, 4, res.Applied)
		assert.Equal(t, 3, versions(t, s, "acme", "acme-emea", "default")["Account"], "seed v1, MakeConflict v2, last change v3")
	})
	t.Run("invalid", func(t *testing.T) {
		s := openStore(t)
		ctx := context.Background()
		acts := &activities.Activities{Orgs: s}
		connect(t, acts, "acme", "acme-emea")
		syncAll(t, acts, "acme", "acme-emea", "sales")
		_, err := s.Demo().PublishMetadata(ctx, "acme", "sales", "Forecast", companionsync.ObjectSegment, "")
		require.NoError(t, err)
		_, err = s.Demo().PublishMetadata(ctx, "acme", "sales", "Quota", "report", `{"rev":1}`)
		require.NoError(t, err)
		p := pending(t, acts, "acme", "acme-emea", "sales")

		_, err = execute[activities.ApplyResult](t, newEnv(t, acts), acts.ApplyMetadata,
			activities.ApplyInput{Home: "acme", Companion: "acme-emea", DataSpaces: []string{"sales"}, UpTo: p.UpTo, Round: "r1"})
		appErr := applicationError(t, err)
		assert.Equal(t, activities.ErrMetadataInvalid, appErr.Type())
		var res activities.ApplyResult
		require.NoError(t, appErr.Details(&res))
		assert.Zero(t, res.Applied)
		require.Len(t, res.Failures, 2)
		assert.Contains(t, res.Failures[0].Message, "invalid definition (it is empty)")
		assert.Contains(t, res.Failures[1].Message, `unknown object kind "report"`)
		for _, f := range res.Failures {
			assert.Equal(t, activities.KindInvalid, f.Kind)
		}
	})
}

func TestRecordSyncFailureIsIdempotentPerRound(t *testing.T) {
	s := openStore(t)
	acts := &activities.Activities{Orgs: s}
	in := activities.RecordFailureInput{Home: "acme", Companion: "acme-emea", Round: "r9", Message: "retries exhausted"}
	for range 2 {
		_, err := newEnv(t, acts).ExecuteActivity(acts.RecordSyncFailure, in)
		require.NoError(t, err)
	}
	log, err := s.Demo().ErrorLog(context.Background(), "acme", "acme-emea")
	require.NoError(t, err)
	require.Len(t, log, 1)
	assert.Equal(t, activities.KindFailed, log[0].Kind)
	assert.Equal(t, "retries exhausted", log[0].Message)
}

// parallel runs fn(i) for i in [0, n) in parallel goroutines and fails
// the test for each error.
func parallel(t *testing.T, n int, fn func(i int, env *testsuite.TestActivityEnvironment) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var suite testsuite.WorkflowTestSuite
			suite.SetLogger(quiet)
			errs[i] = fn(i, suite.NewTestActivityEnvironment())
		}()
	}
	wg.Wait()
	for i, err := range errs {
		assert.NoError(t, err, "goroutine %d", i)
	}
}

func TestActivitiesOnDifferentConnectionsRunConcurrently(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	acts := &activities.Activities{Orgs: s}
	shares := []companionsync.Share{
		{Home: "acme", Companion: "acme-emea", DataSpace: "default"},
		{Home: "acme", Companion: "acme-apac", DataSpace: "sales"},
		{Home: "globex", Companion: "globex-emea", DataSpace: "default"},
	}
	tokens := []string{"wf-emea", "wf-apac", orgstore.SeededConnectionToken}

	parallel(t, len(shares), func(i int, env *testsuite.TestActivityEnvironment) error {
		sh := shares[i]
		env.RegisterActivity(acts)
		if _, err := env.ExecuteActivity(acts.Handshake,
			activities.HandshakeInput{Home: sh.Home, Companion: sh.Companion, Token: tokens[i]}); err != nil {
			return err
		}
		_, err := env.ExecuteActivity(acts.CopyRecords,
			activities.CopyInput{Home: sh.Home, Companion: sh.Companion, DataSpace: sh.DataSpace, BatchSize: 200})
		return err
	})
	for _, sh := range shares {
		assertSameRecords(t, s, sh.Home, sh.Companion, sh.DataSpace)
		_, err := s.Demo().ChangeMetadata(ctx, sh.Home, sh.DataSpace, 3)
		require.NoError(t, err)
	}

	parallel(t, len(shares), func(i int, env *testsuite.TestActivityEnvironment) error {
		sh := shares[i]
		env.RegisterActivity(acts)
		_, err := env.ExecuteActivity(acts.ApplyMetadata, activities.ApplyInput{
			Home: sh.Home, Companion: sh.Companion, DataSpaces: []string{sh.DataSpace}, UpTo: 1 << 40, Round: "r1"})
		return err
	})
	for _, sh := range shares {
		assert.Zero(t, pending(t, acts, sh.Home, sh.Companion, sh.DataSpace).Changes)
	}
}

// TestBatchesGrowWhileQuick: a step's batches start at the batch size,
// double while each is quick, and never exceed the bound; a slow batch
// halves the next, never below the first.
func TestBatchesGrowWhileQuick(t *testing.T) {
	s := openStore(t)
	connect(t, &activities.Activities{Orgs: s}, "acme", "acme-emea")
	rec := &recordingOrgs{Orgs: s}
	acts := &activities.Activities{Orgs: rec}
	p, err := execute[activities.CopyProgress](t, newEnv(t, acts), acts.CopyRecords,
		activities.CopyInput{Home: "acme", Companion: "acme-emea", DataSpace: "default", BatchSize: 50})
	require.NoError(t, err)
	require.True(t, p.Done)
	require.GreaterOrEqual(t, len(rec.limits), 3)
	assert.Equal(t, 50, rec.limits[0], "the first batch is the batch size")
	grew := false
	for i, n := range rec.limits {
		assert.GreaterOrEqual(t, n, 50, "batch %d", i)
		assert.LessOrEqual(t, n, 50*128, "batch %d", i)
		grew = grew || n > 50
	}
	assert.True(t, grew, "quick batches grow: %v", rec.limits)
	assertSameRecords(t, s, "acme", "acme-emea", "default")
}
