package codec_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/companionsync/companionsync/codec"
)

type greeting struct{ Text string }

func greetActivity(_ context.Context, name string) (greeting, error) {
	if name == "" {
		return greeting{}, temporal.NewNonRetryableApplicationError("no name given", "NoName", nil)
	}
	return greeting{Text: "hello " + name}, nil
}

func greetWorkflow(ctx workflow.Context, name string) (greeting, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: time.Minute})
	var g greeting
	err := workflow.ExecuteActivity(ctx, greetActivity, name).Get(ctx, &g)
	return g, err
}

// TestWorkflowWithEncryptingConverter runs a workflow and its activity with
// the encrypting data converter in the SDK's test environment.
func TestWorkflowWithEncryptingConverter(t *testing.T) {
	key, err := codec.GenerateKey("k1")
	if err != nil {
		t.Fatal(err)
	}
	ring, err := codec.NewKeyRing(key)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, want, wantErr string }{
		{"ada", "hello ada", ""},
		{"", "", "no name given"},
	} {
		var suite testsuite.WorkflowTestSuite
		env := suite.NewTestWorkflowEnvironment()
		env.SetDataConverter(codec.NewDataConverter(ring))
		env.RegisterActivity(greetActivity)
		env.ExecuteWorkflow(greetWorkflow, tt.name)
		if !env.IsWorkflowCompleted() {
			t.Fatalf("%q: workflow did not complete", tt.name)
		}
		err := env.GetWorkflowError()
		if tt.wantErr != "" {
			var appErr *temporal.ApplicationError
			if err == nil || !errors.As(err, &appErr) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%q: err = %v, want an application error saying %q", tt.name, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", tt.name, err)
		}
		var g greeting
		if err := env.GetWorkflowResult(&g); err != nil || g.Text != tt.want {
			t.Errorf("%q: result %+v, %v; want %q", tt.name, g, err, tt.want)
		}
	}
}
