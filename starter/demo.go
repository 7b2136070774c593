package main

import (
	"context"
	"fmt"

	"github.com/companionsync/companionsync/orgstore"
)

// demoCommands change the worker's org store to show what the connections
// do about it. They talk to the store, not to Temporal.
var demoCommands = []command{
	{"expire-license", "--org H", "make the home org's licence expire now", runExpireLicence},
	{"renew-license", "--org H", "renew the home org's licence for a year", runRenewLicence},
	{"deactivate", "--org C", "mark the companion org inactive", runDeactivate},
	{"reactivate", "--org C", "mark the companion org active again", runReactivate},
	{"change-metadata", "--org H --data-space NAME [--count N]", "publish new versions of metadata objects", runChangeMetadata},
	{"conflict", "--connection H/C --data-space NAME", "edit a synced object in the companion and change it in the home", runConflict},
	{"resolve", "--connection H/C", "discard the companion's conflicting edits", runResolve},
	{"fail-initial-sync", "--connection H/C --data-space NAME --times N", "make the next N initial-sync steps fail", runFailInitialSync},
}

func runDemo(ctx context.Context, inv *invocation, args []string) error {
	return inv.dispatch(ctx, "starter demo", demoCommands, args)
}

// demoFlags starts the flags of a demo subcommand, with --org-store.
func demoFlags(inv *invocation, name, synopsis, summary string) (*flagSet, *string) {
	fs := inv.flags("demo "+name, synopsis, summary)
	return fs, fs.orgStore()
}

// orgOp runs a demo operation on one org named by --org.
func orgOp(ctx context.Context, inv *invocation, args []string, name, summary string,
	op func(*orgstore.Demo, context.Context, string) error, done string) error {
	fs, path := demoFlags(inv, name, "--org ORG", summary)
	org := fs.String("org", "", "the org (required)")
	fs.require("org")
	if err := fs.parse(args); err != nil {
		return err
	}
	s, err := inv.openStore(ctx, *path)
	if err != nil {
		return err
	}
	if err := op(s.Demo(), ctx, *org); err != nil {
		return err
	}
	fmt.Fprintf(inv.stdout, done+"\n", *org)
	return nil
}

func runExpireLicence(ctx context.Context, inv *invocation, args []string) error {
	return orgOp(ctx, inv, args, "expire-license", "Make the home org's licence expire now: its connections turn Inactive at the next health check.",
		(*orgstore.Demo).ExpireLicence,
		"licence of %s expired: its connections turn Inactive at the next health check (or at once with 'starter recheck')")
}

func runRenewLicence(ctx context.Context, inv *invocation, args []string) error {
	return orgOp(ctx, inv, args, "renew-license", "Renew the home org's licence for a year: its Inactive connections come back at the next health check.",
		(*orgstore.Demo).RenewLicence,
		"licence of %s renewed for a year: its connections come back at the next health check (or at once with 'starter recheck')")
}

func runDeactivate(ctx context.Context, inv *invocation, args []string) error {
	return orgOp(ctx, inv, args, "deactivate", "Mark the companion org inactive: its connection turns Inactive at the next health check.",
		(*orgstore.Demo).Deactivate,
		"companion %s deactivated: its connection turns Inactive at the next health check (or at once with 'starter recheck')")
}

func runReactivate(ctx context.Context, inv *invocation, args []string) error {
	return orgOp(ctx, inv, args, "reactivate", "Mark the companion org active again: its connection comes back at the next health check.",
		(*orgstore.Demo).Reactivate,
		"companion %s reactivated: its connection comes back at the next health check (or at once with 'starter recheck')")
}

func runChangeMetadata(ctx context.Context, inv *invocation, args []string) error {
	fs, path := demoFlags(inv, "change-metadata", "--org H --data-space NAME [--count N]",
		"Publish new versions of the data space's metadata objects in the home org; the next metadata round syncs them.")
	org := fs.String("org", "", "the home org (required)")
	ds := fs.String("data-space", "", "the data space (required)")
	count := fs.Int("count", 1, "how many changes to publish")
	fs.require("org", "data-space")
	if err := fs.parse(args); err != nil {
		return err
	}
	if *count <= 0 {
		return usageError{err: fmt.Errorf("starter demo change-metadata: --count %d: want 1 or more", *count)}
	}
	s, err := inv.openStore(ctx, *path)
	if err != nil {
		return err
	}
	last, err := s.Demo().ChangeMetadata(ctx, *org, *ds, *count)
	if err != nil {
		return err
	}
	fmt.Fprintf(inv.stdout, "published %d metadata %s in %s/%s (last change #%d): the next metadata round syncs %s\n",
		*count, plural(*count, "change", "changes"), *org, *ds, last, plural(*count, "it", "them"))
	return nil
}

func runConflict(ctx context.Context, inv *invocation, args []string) error {
	fs, path := demoFlags(inv, "conflict", "--connection H/C --data-space NAME",
		"Edit a synced metadata object in the companion org and publish a new version of it in the home org:\nthe next metadata round stops with a conflict. The data space must be Active.")
	ref := fs.connection()
	ds := fs.String("data-space", "", "the shared data space (required)")
	fs.require("data-space")
	if err := fs.parse(args); err != nil {
		return err
	}
	s, err := inv.openStore(ctx, *path)
	if err != nil {
		return err
	}
	object, err := s.Demo().MakeConflict(ctx, ref.Home, ref.Companion, *ds)
	if err != nil {
		return err
	}
	fmt.Fprintf(inv.stdout, "edited %s in %s and changed it in %s/%s: the next metadata round of %s stops with a conflict\n",
		object, ref.Companion, ref.Home, *ds, ref)
	return nil
}

func runResolve(ctx context.Context, inv *invocation, args []string) error {
	fs, path := demoFlags(inv, "resolve", "--connection H/C",
		"Resolve the conflicts of the connection in the companion org: discard its local edits of synced objects\nand its local objects named like the home's. Then resume the metadata sync.")
	ref := fs.connection()
	if err := fs.parse(args); err != nil {
		return err
	}
	s, err := inv.openStore(ctx, *path)
	if err != nil {
		return err
	}
	n, err := s.Demo().ResolveConflicts(ctx, ref.Home, ref.Companion)
	if err != nil {
		return err
	}
	fmt.Fprintf(inv.stdout, "resolved %d %s in %s: now 'starter resume --connection %s'\n", n, plural(n, "conflict", "conflicts"), ref.Companion, ref)
	return nil
}

func runFailInitialSync(ctx context.Context, inv *invocation, args []string) error {
	fs, path := demoFlags(inv, "fail-initial-sync", "--connection H/C --data-space NAME --times N",
		"Make the next N initial-sync steps of the data space on the connection fail with a retryable error\n(0 clears them). Enough failures exhaust the retries and put the share in Error.")
	ref := fs.connection()
	ds := fs.String("data-space", "", "the data space (required)")
	times := fs.Int("times", 0, "how many steps fail (required; 0 clears)")
	fs.require("data-space", "times")
	if err := fs.parse(args); err != nil {
		return err
	}
	if *times < 0 {
		return usageError{err: fmt.Errorf("starter demo fail-initial-sync: --times %d: want 0 or more", *times)}
	}
	s, err := inv.openStore(ctx, *path)
	if err != nil {
		return err
	}
	if err := s.Demo().InjectCopyFailures(ctx, ref.Home, ref.Companion, *ds, *times); err != nil {
		return err
	}
	fmt.Fprintf(inv.stdout, "the next %d initial-sync %s of %s on %s will fail\n", *times, plural(*times, "step", "steps"), *ds, ref)
	return nil
}
