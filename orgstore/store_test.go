package orgstore

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/companionsync/companionsync"
)

// open opens a store in a fresh temporary directory, seeded with records
// per default data space unless records is 0.
func open(t testing.TB, records int) *Store {
	t.Helper()
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "orgs.db"))
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	if records > 0 {
		require.NoError(t, s.Seed(context.Background(), SeedOptions{RecordsPerDataSpace: records}))
	}
	return s
}

func TestOpen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "orgs.db")
	s, err := Open(ctx, path)
	require.NoError(t, err)
	v, err := s.SchemaVersion(ctx)
	require.NoError(t, err)
	assert.Equal(t, len(migrations), v)
	var mode string
	require.NoError(t, s.db.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode))
	assert.Equal(t, "wal", mode)
	var fk int
	require.NoError(t, s.db.QueryRowContext(ctx, `PRAGMA foreign_keys`).Scan(&fk))
	assert.Equal(t, 1, fk)
	require.NoError(t, s.Seed(ctx, SeedOptions{RecordsPerDataSpace: 10}))
	require.NoError(t, s.Close())

	s, err = Open(ctx, path)
	require.NoError(t, err, "reopening applies no migration twice")
	defer s.Close()
	var applied int
	require.NoError(t, s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations`).Scan(&applied))
	assert.Equal(t, len(migrations), applied)
	n, err := s.CountRecords(ctx, "acme", "default")
	require.NoError(t, err)
	assert.Equal(t, 10, n, "data survives a reopen")

	for _, path := range []string{"", ":memory:"} {
		_, err := Open(ctx, path)
		assert.ErrorContains(t, err, "want a database file path", "path %q", path)
	}
}

func TestSeed(t *testing.T) {
	ctx := context.Background()
	s := open(t, 100)
	require.NoError(t, s.Seed(ctx, SeedOptions{RecordsPerDataSpace: 999}), "seeding again is a no-op")

	orgs := []struct {
		id     string
		role   companionsync.Role
		kind   companionsync.Kind
		active bool
	}{
		{"acme", companionsync.RoleHome, companionsync.KindProduction, true},
		{"acme-emea", companionsync.RoleCompanion, companionsync.KindProduction, true},
		{"acme-apac", companionsync.RoleCompanion, companionsync.KindProduction, true},
		{"acme-sbx", companionsync.RoleCompanion, companionsync.KindSandbox, true},
		{"acme-old", companionsync.RoleCompanion, companionsync.KindProduction, false},
		{"globex", companionsync.RoleHome, companionsync.KindProduction, true},
		{"globex-emea", companionsync.RoleCompanion, companionsync.KindProduction, true},
	}
	for _, want := range orgs {
		t.Run(want.id, func(t *testing.T) {
			o, err := s.Org(ctx, want.id)
			require.NoError(t, err)
			assert.Equal(t, want.role, o.Role)
			assert.Equal(t, want.kind, o.Kind)
			assert.Equal(t, want.active, o.Active)
			if want.role == companionsync.RoleHome {
				assert.True(t, o.LicenceExpiresAt.After(time.Now().AddDate(0, 11, 0)))
			}
		})
	}
	acme, err := s.Org(ctx, "acme")
	require.NoError(t, err)
	assert.Equal(t, 3, acme.MaxCompanions)
	conn, err := s.ConnectionOf(ctx, "globex-emea")
	require.NoError(t, err)
	assert.Equal(t, "globex", conn.Home)

	spaces, err := s.DataSpaces(ctx, "acme")
	require.NoError(t, err)
	assert.Equal(t, []string{"default", "marketing", "sales"}, spaces)
	for ds, want := range map[string]int{"default": 100, "marketing": 10, "sales": 10} {
		n, err := s.CountRecords(ctx, "acme", ds)
		require.NoError(t, err)
		assert.Equal(t, want, n, ds)
	}
	_, err = s.Org(ctx, "initech")
	assert.ErrorIs(t, err, companionsync.ErrNotFound)
}

func TestRegisterIsAtomic(t *testing.T) {
	ctx := context.Background()
	t.Run("home limit", func(t *testing.T) {
		s := open(t, 10)
		companions := []string{"acme-emea", "acme-apac", "acme-sbx", "acme-old"}
		errs := concurrently(len(companions), func(i int) error {
			return s.Register(ctx, companionsync.Connection{Home: "acme", Companion: companions[i], Token: "t"}, 2)
		})
		var ok, limited int
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case errors.Is(err, companionsync.ErrCompanionLimit):
				limited++
			default:
				t.Errorf("unexpected error: %v", err)
			}
		}
		assert.Equal(t, 2, ok)
		assert.Equal(t, 2, limited)
	})
	t.Run("one home per companion", func(t *testing.T) {
		s := open(t, 10)
		homes := []string{"acme", "globex"}
		errs := concurrently(len(homes), func(i int) error {
			return s.Register(ctx, companionsync.Connection{Home: homes[i], Companion: "acme-emea", Token: homes[i]}, 3)
		})
		var ok, taken int
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case errors.Is(err, companionsync.ErrCompanionTaken):
				taken++
			default:
				t.Errorf("unexpected error: %v", err)
			}
		}
		assert.Equal(t, 1, ok)
		assert.Equal(t, 1, taken)
	})
	t.Run("same token again", func(t *testing.T) {
		s := open(t, 10)
		c := companionsync.Connection{Home: "acme", Companion: "acme-emea", Token: "t"}
		require.NoError(t, s.Register(ctx, c, 1))
		require.NoError(t, s.Register(ctx, c, 1), "a retried registration succeeds even at the limit")
		c.Token = "other"
		assert.ErrorIs(t, s.Register(ctx, c, 1), companionsync.ErrCompanionTaken)
	})
}

// concurrently runs fn(i) for i in [0, n) at once and returns the errors.
func concurrently(n int, fn func(i int) error) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn(i)
		}()
	}
	wg.Wait()
	return errs
}

func TestApplyChangeAppliesOnceUnderConcurrency(t *testing.T) {
	ctx := context.Background()
	s := open(t, 10)
	sh := companionsync.Share{Home: "acme", Companion: "acme-emea", DataSpace: "sales"}
	require.NoError(t, s.CompleteInitialSync(ctx, sh))
	_, err := s.ChangeMetadata(ctx, "acme", "sales", 1)
	require.NoError(t, err)
	conn := companionsync.Connection{Home: "acme", Companion: "acme-emea"}
	changes, err := s.Changes(ctx, conn, []string{"sales"}, 1<<40)
	require.NoError(t, err)
	require.Len(t, changes, 1)

	var mu sync.Mutex
	applied := 0
	errs := concurrently(4, func(int) error {
		ok, err := s.ApplyChange(ctx, conn, changes[0])
		if ok {
			mu.Lock()
			applied++
			mu.Unlock()
		}
		return err
	})
	for _, err := range errs {
		assert.NoError(t, err)
	}
	assert.Equal(t, 1, applied)
	seq, ok, err := s.MetadataCursor(ctx, "acme", "acme-emea", "sales")
	require.NoError(t, err)
	assert.True(t, ok)
	assert.Equal(t, changes[0].Sequence, seq)
}

func TestDemoOperationsNameWhatIsWrong(t *testing.T) {
	ctx := context.Background()
	s := open(t, 10)
	tests := []struct {
		name string
		op   func() error
		want string
	}{
		{"expire unknown org", func() error { return s.ExpireLicence(ctx, "initech") }, `org "initech" does not exist`},
		{"expire a companion", func() error { return s.ExpireLicence(ctx, "acme-emea") }, `org "acme-emea" is a companion org, not a home org`},
		{"deactivate a home", func() error { return s.Deactivate(ctx, "acme") }, `org "acme" is a home org, not a companion org`},
		{"change unknown data space", func() error { _, err := s.ChangeMetadata(ctx, "acme", "finance", 1); return err },
			`data space "finance" of home org "acme": not found`},
		{"change nothing", func() error { _, err := s.ChangeMetadata(ctx, "acme", "sales", 0); return err },
			"the number of changes must be positive"},
		{"conflict in unsynced data space", func() error { _, err := s.MakeConflict(ctx, "acme", "acme-emea", "sales"); return err },
			`data space "sales" is not synced to companion "acme-emea"`},
		{"inject into unknown companion", func() error { return s.InjectCopyFailures(ctx, "acme", "initech", "sales", 1) },
			`org "initech" does not exist`},
		{"inject into unknown data space", func() error { return s.InjectCopyFailures(ctx, "acme", "acme-emea", "finance", 1) },
			`data space "finance" of home org "acme"`},
		{"resolve for unknown home", func() error { _, err := s.ResolveConflicts(ctx, "initech", "acme-emea"); return err },
			`org "initech" does not exist`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.ErrorContains(t, tt.op(), tt.want)
		})
	}
}

func TestDemoOperationsChangeState(t *testing.T) {
	ctx := context.Background()
	s := open(t, 10)

	require.NoError(t, s.ExpireLicence(ctx, "acme"))
	o, err := s.Org(ctx, "acme")
	require.NoError(t, err)
	assert.False(t, o.LicenceExpiresAt.After(time.Now()))
	require.NoError(t, s.RenewLicence(ctx, "acme"))
	o, err = s.Org(ctx, "acme")
	require.NoError(t, err)
	assert.True(t, o.LicenceExpiresAt.After(time.Now().AddDate(0, 11, 0)))

	require.NoError(t, s.Deactivate(ctx, "acme-emea"))
	o, err = s.Org(ctx, "acme-emea")
	require.NoError(t, err)
	assert.False(t, o.Active)
	require.NoError(t, s.Reactivate(ctx, "acme-emea"))
	o, err = s.Org(ctx, "acme-emea")
	require.NoError(t, err)
	assert.True(t, o.Active)

	sh := companionsync.Share{Home: "acme", Companion: "acme-emea", DataSpace: "marketing"}
	require.NoError(t, s.CompleteInitialSync(ctx, sh))
	conn := companionsync.Connection{Home: "acme", Companion: "acme-emea"}
	last, err := s.ChangeMetadata(ctx, "acme", "marketing", 4)
	require.NoError(t, err)
	n, upTo, err := s.PendingChanges(ctx, conn, []string{"marketing"})
	require.NoError(t, err)
	assert.Equal(t, 4, n)
	assert.Equal(t, last, upTo)

	object, err := s.MakeConflict(ctx, "acme", "acme-emea", "marketing")
	require.NoError(t, err)
	local, err := s.LocalObjects(ctx, conn, []string{"marketing"})
	require.NoError(t, err)
	assert.Equal(t, []companionsync.LocalObject{{DataSpace: "marketing", Name: object, Edited: true}}, local)
	n, _, err = s.PendingChanges(ctx, conn, []string{"marketing"})
	require.NoError(t, err)
	assert.Equal(t, 5, n, "the conflict publishes a home change too")

	resolved, err := s.ResolveConflicts(ctx, "acme", "acme-emea")
	require.NoError(t, err)
	assert.Equal(t, 1, resolved)
	local, err = s.LocalObjects(ctx, conn, []string{"marketing"})
	require.NoError(t, err)
	assert.Empty(t, local)

	require.NoError(t, s.InjectCopyFailures(ctx, "acme", "acme-emea", "marketing", 1))
	left, taken, err := s.TakeInjectedFailure(ctx, sh)
	require.NoError(t, err)
	assert.True(t, taken)
	assert.Zero(t, left)
	_, taken, err = s.TakeInjectedFailure(ctx, sh)
	require.NoError(t, err)
	assert.False(t, taken)
}

func TestAddOrg(t *testing.T) {
	s := open(t, 10)
	ctx := context.Background()
	expires := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	require.NoError(t, s.AddOrg(ctx, companionsync.Org{ID: "initech", Role: companionsync.RoleHome, Kind: companionsync.KindSandbox, LicenceExpiresAt: expires, MaxCompanions: 7}))
	require.NoError(t, s.AddOrg(ctx, companionsync.Org{ID: "initech-eu", Role: companionsync.RoleCompanion, Kind: companionsync.KindSandbox, Active: true}))

	home, err := s.Org(ctx, "initech")
	require.NoError(t, err)
	assert.Equal(t, companionsync.RoleHome, home.Role)
	assert.Equal(t, 7, home.MaxCompanions)
	assert.True(t, home.LicenceExpiresAt.Equal(expires))
	comp, err := s.Org(ctx, "initech-eu")
	require.NoError(t, err)
	assert.True(t, comp.Active)

	for name, bad := range map[string]companionsync.Org{
		"duplicate id": {ID: "acme", Role: companionsync.RoleHome, Kind: companionsync.KindProduction},
		"no id":        {Role: companionsync.RoleHome, Kind: companionsync.KindProduction},
		"bad role":     {ID: "x", Role: "admin", Kind: companionsync.KindProduction},
		"bad kind":     {ID: "x", Role: companionsync.RoleCompanion, Kind: "staging"},
	} {
		assert.Error(t, s.AddOrg(ctx, bad), name)
	}
}
