package control_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/companionsync/companionsync/contract"
	"github.com/companionsync/companionsync/control"
)

// The README's "From code" example: connect, share, read the status.
func ExampleClient() {
	ctx := context.Background()
	run := func() error {
		c, err := control.Dial(ctx, control.DialOptions{Address: "127.0.0.1:7233"})
		if err != nil {
			return err
		}
		defer c.Close()
		cs := control.New(c)

		ref := control.Ref{Home: "acme", Companion: "acme-emea"}
		if _, err := cs.Connect(ctx, ref, contract.Settings{}); err != nil {
			var refused *control.RefusedError
			if errors.As(err, &refused) {
				return fmt.Errorf("not eligible (rule %s): %w", refused.Rule, err)
			}
			return err
		}
		if _, err := cs.Share(ctx, ref, "default"); err != nil {
			return err
		}
		view, err := cs.Status(ctx, ref)
		if err != nil {
			return err
		}
		fmt.Println(view.Status, view.DataSpaces[0].InitializationStatus, view.DataSpaces[0].RecordsCopied)
		return nil
	}
	_ = run // needs a running worker; compiled, not run
}
