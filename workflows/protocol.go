package workflows

import "fmt"

// checkProtocol fails the workflow task when the input names a protocol
// this code does not run: newer than it knows (a worker of an older
// release took a task of a run that a newer release moved on), or retired. Failing the task (the SDK retries
// it, and a worker of the newer release takes it) keeps the state the
// older code would drop when it continued as new.
func checkProtocol(workflowName string, p Protocol) {
	if p > CurrentProtocol {
		panic(fmt.Sprintf("%s: input of protocol %d, newer than this worker's %d; a worker of a newer release must run it (this task fails and is retried)",
			workflowName, p, CurrentProtocol))
	}
	if p < OldestProtocol {
		panic(fmt.Sprintf("%s: input of protocol %d, which this release no longer runs (it runs %d to %d); run release %s until starter doctor reports no run on it (this task fails and is retried)",
			workflowName, p, OldestProtocol, CurrentProtocol, LastReleaseOfRetired))
	}
}
