package admin

// The control socket's retention ops (holds, hold_add, hold_remove,
// restrict, purge_plan, purge_approve): the server side and the client.

import (
	"context"

	"github.com/smimed/smimed/archive"
)

// doRetention runs one retention op, writing its frames; it returns the
// end frame (N: the messages a hold change concerns).
func doRetention(ctx context.Context, api ArchiveAPI, req *controlRequest, fw *frameWriter) (*controlFrame, error) {
	end := &controlFrame{End: true}
	var err error
	var n int
	switch req.Op {
	case opHolds:
		var hs []archive.Hold
		if hs, err = api.Holds(ctx); err == nil {
			for i := range hs {
				if err = fw.frame(&controlFrame{Hold: &hs[i]}); err != nil {
					break
				}
			}
		}
	case opHoldAdd:
		n, err = api.HoldAdd(ctx, req.Case, req.query(), req.Reason)
	case opHoldRemove:
		n, err = api.HoldRemove(ctx, req.Case)
	case opRestrict:
		var x *archive.Restriction
		if x, err = api.Restrict(ctx, req.ID, req.Reason, req.Lift); err == nil {
			err = fw.frame(&controlFrame{Restriction: x})
		}
	case opPurgePlan:
		var p *archive.PurgePlan
		if p, err = api.PurgePlan(ctx); err == nil {
			err = fw.frame(&controlFrame{Plan: p})
		}
	case opPurgeApprove:
		var t *archive.Record
		t, err = api.PurgeApprove(ctx, req.Plan)
		if t != nil {
			// A purge done with files left over still names its tombstone.
			if ferr := fw.frame(&controlFrame{Record: t}); err == nil {
				err = ferr
			}
		}
	}
	end.N = int64(n)
	if err == nil {
		err = fw.err
	}
	return end, err
}

func (c *controlClient) Holds(ctx context.Context) ([]archive.Hold, error) {
	var out []archive.Hold
	_, err := c.call(ctx, &controlRequest{Op: opHolds}, func(f *controlFrame) error {
		if f.Hold == nil {
			return unexpected(opHolds)
		}
		out = append(out, *f.Hold)
		return nil
	})
	return out, err
}

func (c *controlClient) HoldAdd(ctx context.Context, name string, q archive.Query, reason string) (int, error) {
	end, err := c.call(ctx, &controlRequest{Op: opHoldAdd, Case: name, Query: &q, Reason: reason}, nil)
	if err != nil {
		return 0, err
	}
	return int(end.N), nil
}

func (c *controlClient) HoldRemove(ctx context.Context, name string) (int, error) {
	end, err := c.call(ctx, &controlRequest{Op: opHoldRemove, Case: name}, nil)
	if err != nil {
		return 0, err
	}
	return int(end.N), nil
}

func (c *controlClient) Restrict(ctx context.Context, id uint64, reason string, lift bool) (*archive.Restriction, error) {
	return callOne(ctx, c, &controlRequest{Op: opRestrict, ID: id, Reason: reason, Lift: lift}, func(f *controlFrame) *archive.Restriction { return f.Restriction })
}

func (c *controlClient) PurgePlan(ctx context.Context) (*archive.PurgePlan, error) {
	return callOne(ctx, c, &controlRequest{Op: opPurgePlan}, func(f *controlFrame) *archive.PurgePlan { return f.Plan })
}

func (c *controlClient) PurgeApprove(ctx context.Context, plan string) (*archive.Record, error) {
	return callOne(ctx, c, &controlRequest{Op: opPurgeApprove, Plan: plan}, func(f *controlFrame) *archive.Record { return f.Record })
}
