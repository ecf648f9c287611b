package client_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/client"
	arrayv1 "github.com/volrep/volrep/proto/volrep/array/v1"
	"github.com/volrep/volrep/server"
	"github.com/volrep/volrep/validation"
)

// bigLabels is the most a volume may carry: MaxLabels labels with values
// of MaxLabelValueLen bytes, about 24 KiB a volume.
func bigLabels(i int) map[string]string {
	m := map[string]string{}
	for j := range validation.MaxLabels {
		m[fmt.Sprintf("label-%02d", j)] = fmt.Sprintf("%04d", i) + strings.Repeat("v", validation.MaxLabelValueLen-4)
	}
	return m
}

// TestListPagesOverGRPC walks ListVolumes through the real server chain in
// pages and checks every volume comes back exactly once, with the client's
// own paging and by hand, and that bad tokens are INVALID_ARGUMENT.
func TestListPagesOverGRPC(t *testing.T) {
	cc, err := server.Dial(serve(t), token)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	ctx := t.Context()
	c := client.New(cc)
	for _, p := range []string{"p1", "p2"} {
		if _, err := c.CreatePool(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	// 100 volumes at the label limit are 2.4 MiB: more than one reply's
	// byte budget, so the client must follow pages even at the maximum
	// page size.
	const n = 100
	for i := range n {
		if _, err := c.CreateVolume(ctx, array.VolumeSpec{Name: fmt.Sprintf("vol-%03d", i), Pool: "p1", SizeBytes: 4096, Labels: bigLabels(i)}); err != nil {
			t.Fatal(err)
		}
	}
	vols, err := c.ListVolumes(ctx, "p1")
	if err != nil {
		t.Fatal(err)
	}
	checkOnce(t, n, func(yield func(string)) {
		for _, v := range vols {
			yield(v.Name)
		}
	})

	raw := arrayv1.NewVolumeServiceClient(cc)
	first, err := raw.ListVolumes(ctx, &arrayv1.ListVolumesRequest{Pool: "p1", PageSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(first.GetVolumes()) >= n || first.GetNextPageToken() == "" {
		t.Fatalf("first page holds %d of %d volumes with token %q; the byte budget did not cut it", len(first.GetVolumes()), n, first.GetNextPageToken())
	}

	// By hand, 7 a page: 15 pages.
	var names []string
	pages := 0
	for tok := ""; ; {
		r, err := raw.ListVolumes(ctx, &arrayv1.ListVolumesRequest{Pool: "p1", PageSize: 7, PageToken: tok})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, v := range r.GetVolumes() {
			names = append(names, v.GetName())
		}
		if tok = r.GetNextPageToken(); tok == "" {
			break
		}
	}
	if pages != (n+6)/7 {
		t.Fatalf("%d pages of 7 for %d volumes", pages, n)
	}
	checkOnce(t, n, func(yield func(string)) {
		for _, s := range names {
			yield(s)
		}
	})

	for name, req := range map[string]*arrayv1.ListVolumesRequest{
		"garbage token":    {Pool: "p1", PageToken: "garbage"},
		"other pool":       {Pool: "p2", PageToken: first.GetNextPageToken()},
		"negative size":    {Pool: "p1", PageSize: -1},
		"token of no pool": {PageToken: first.GetNextPageToken()},
	} {
		_, err := raw.ListVolumes(ctx, req)
		want := "page_token"
		if req.GetPageSize() < 0 {
			want = "page_size"
		}
		if status.Code(err) != codes.InvalidArgument || badRequestField(err) != want {
			t.Errorf("%s: %v, want INVALID_ARGUMENT naming %s", name, err, want)
		}
	}
}

func checkOnce(t *testing.T, n int, each func(yield func(string))) {
	t.Helper()
	seen := map[string]int{}
	total := 0
	each(func(s string) { seen[s]++; total++ })
	for i := range n {
		name := fmt.Sprintf("vol-%03d", i)
		if seen[name] != 1 {
			t.Errorf("%s listed %d times, want once", name, seen[name])
		}
	}
	if total != n {
		t.Errorf("listed %d volumes, want %d", total, n)
	}
}

func badRequestField(err error) string {
	var se interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &se) {
		return ""
	}
	for _, d := range se.GRPCStatus().Details() {
		if br, ok := d.(*errdetails.BadRequest); ok && len(br.GetFieldViolations()) > 0 {
			return br.GetFieldViolations()[0].GetField()
		}
	}
	return ""
}

// TestListKeepsTheEngineOrderAcrossPages: snapshots come oldest first and
// callers take the last as the newest; paging must not reorder them, even
// when their names sort the other way.
func TestListKeepsTheEngineOrderAcrossPages(t *testing.T) {
	cc, err := server.Dial(serve(t), token)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	ctx := t.Context()
	c := client.New(cc)
	if _, err := c.CreatePool(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateVolume(ctx, array.VolumeSpec{Name: "v", Pool: "p", SizeBytes: 4096}); err != nil {
		t.Fatal(err)
	}
	want := []string{"snap-e", "snap-d", "snap-c", "snap-b", "snap-a"}
	for _, n := range want {
		if _, err := c.CreateSnapshot(ctx, "v", n, nil); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	raw := arrayv1.NewVolumeServiceClient(cc)
	for tok := ""; ; {
		r, err := raw.ListSnapshots(ctx, &arrayv1.ListSnapshotsRequest{Volume: "v", PageSize: 2, PageToken: tok})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range r.GetSnapshots() {
			got = append(got, s.GetName())
		}
		if tok = r.GetNextPageToken(); tok == "" {
			break
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("pages of 2 list %v, want creation order %v", got, want)
	}
	snaps, err := c.ListSnapshots(ctx, "v")
	if err != nil {
		t.Fatal(err)
	}
	if n := snaps[len(snaps)-1].Name; n != "snap-a" {
		t.Fatalf("the client's last snapshot is %s, want the newest, snap-a", n)
	}
}
