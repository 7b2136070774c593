package activities

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/companionsync/companionsync"
	"github.com/companionsync/companionsync/contract"
)

// The reconciler's filtered scans. A fleet of quiet connections has nothing
// for the reconciler to find, so each scan reads its source page by page
// inside one activity and returns only what the reconciler must look at:
// the unsettled connections, the running workflows the registry does not
// know, the runs behind the current protocol. A run over a quiet fleet then
// costs one activity per scan whatever the fleet size; a scan stops early,
// with a cursor to go on from, when it holds a page of results or has
// worked for scanBudget, so no result grows past a page and no attempt
// nears its timeout.

// scanBudget bounds the work of one call of a filtered scan.
const scanBudget = time.Minute

// surveyParallel bounds the connections a registry scan surveys at once.
const surveyParallel = 8

// scanResultBytes bounds the surveys one registry scan returns, well under
// the server's limit on a payload (2 MiB by default): an unsettled
// connection's survey carries its whole status.
const scanResultBytes = 1 << 20

// surveySize is about what a survey weighs in a result.
func surveySize(s ConnectionSurvey) int {
	return 1024 + len(s.Status) + len(s.Settings) + 512*len(s.Shares) + 64*len(s.DataSpaces)
}

// RegistryScanInput asks for the unsettled connections of the registry
// whose companion sorts after After: the registry is read PageSize rows at
// a time, and the call returns once it holds PageSize unsettled surveys (or
// scanResultBytes of them).
type RegistryScanInput struct {
	After    string `json:"after"`
	PageSize int    `json:"pageSize"`
	// Template carries what every target shares (the status query, the
	// search attribute names, QueryUnsettledOnly); each connection's
	// workflow IDs are the contract's.
	Template SurveyTarget `json:"template"`
}

// RegistryScan is one call of ScanRegistry.
type RegistryScan struct {
	// Surveys are the connections surveyed that are not settled, in
	// companion order.
	Surveys []ConnectionSurvey `json:"surveys"`
	// Surveyed counts every connection surveyed, the settled ones included.
	Surveyed int `json:"surveyed"`
	// Next is the companion to go on after; empty when the registry ended.
	Next string `json:"next,omitempty"`
}

// TargetOf is the survey target of a registered connection: the template
// with the connection and its workflow IDs filled in.
func TargetOf(c companionsync.Connection, template SurveyTarget) SurveyTarget {
	t := template
	t.Connection = c
	t.ConnectionID = contract.ConnectionWorkflowID(c.Home, c.Companion)
	t.MetadataID = contract.MetadataSyncWorkflowID(c.Home, c.Companion)
	t.ShareIDPrefix = contract.ShareWorkflowID(c.Home, c.Companion, "")
	return t
}

// ScanRegistry surveys the registry from After, page by page, and returns
// the connections that are not settled (ConnectionSurvey.Settled): a quiet
// fleet costs the reconciler one activity, not two per page.
func (f *Fleet) ScanRegistry(ctx context.Context, in RegistryScanInput) (RegistryScan, error) {
	start := time.Now()
	if in.PageSize <= 0 {
		in.PageSize = contract.DefaultReconcilerInput().PageSize
	}
	out := RegistryScan{Surveys: []ConnectionSurvey{}}
	after, size := in.After, 0
	full := func() bool { return len(out.Surveys) >= in.PageSize || size >= scanResultBytes }
	for {
		page, err := f.Orgs.Connections(ctx, after, in.PageSize)
		if err != nil {
			return RegistryScan{}, err
		}
		// Surveyed a few at a time: once the result is full, the rest of
		// the page is left (unqueried) for the next call.
		for chunk := range slices.Chunk(page, 4*surveyParallel) {
			surveys, err := f.surveyAll(ctx, chunk, in.Template)
			if err != nil {
				return RegistryScan{}, err
			}
			for i, s := range surveys {
				out.Surveyed++
				after = chunk[i].Companion
				if !s.Settled {
					out.Surveys = append(out.Surveys, s)
					size += surveySize(s)
				}
			}
			if full() && after != page[len(page)-1].Companion {
				out.Next = after
				return out, nil
			}
		}
		if len(page) < in.PageSize {
			return out, nil
		}
		if full() || time.Since(start) >= scanBudget {
			out.Next = after
			return out, nil
		}
	}
}

// surveyAll surveys a page of connections, surveyParallel at a time, in
// the page's order.
func (f *Fleet) surveyAll(ctx context.Context, page []companionsync.Connection, template SurveyTarget) ([]ConnectionSurvey, error) {
	out := make([]ConnectionSurvey, len(page))
	errs := make([]error, len(page))
	sem := make(chan struct{}, surveyParallel)
	var wg sync.WaitGroup
	for i, c := range page {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			out[i], errs[i] = f.survey(ctx, TargetOf(c, template))
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// UnregisteredInput asks for the executions of a visibility query whose
// registry row does not name the home in their HomeAttr: the query's pages
// are read PageSize at a time until PageSize such executions are found.
type UnregisteredInput struct {
	ListInput
	HomeAttr      string `json:"homeAttr"`
	CompanionAttr string `json:"companionAttr"`
}

// UnregisteredExecutions pages through the executions of the query and
// returns those that carry both attributes and whose companion's registry
// row names another home, or none. Visibility lags: callers confirm what
// they act on. NextPageToken is empty once the query's pages ended.
func (f *Fleet) UnregisteredExecutions(ctx context.Context, in UnregisteredInput) (ListPage, error) {
	start := time.Now()
	if in.PageSize <= 0 {
		in.PageSize = contract.DefaultReconcilerInput().PageSize
	}
	out := ListPage{Executions: []Execution{}}
	token := in.PageToken
	for {
		page, err := f.ListExecutions(ctx, ListInput{Query: in.Query, PageSize: in.PageSize, PageToken: token})
		if err != nil {
			return ListPage{}, err
		}
		for _, e := range page.Executions {
			home, companion := e.Attrs[in.HomeAttr], e.Attrs[in.CompanionAttr]
			if home == "" || companion == "" {
				continue
			}
			row, err := f.connectionOf(ctx, companion)
			if err != nil {
				return ListPage{}, err
			}
			if row.Home != home {
				out.Executions = append(out.Executions, e)
			}
		}
		token = page.NextPageToken
		if len(token) == 0 || len(out.Executions) >= in.PageSize || time.Since(start) >= scanBudget {
			out.NextPageToken = token
			return out, nil
		}
	}
}
