package e2e

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	driverv1 "github.com/volrep/volrep/proto/volrep/driver/v1"
)

// TestOversizedTypeNameIsRefusedUpFront reproduces issue 12 item 16: two
// CreateVolume calls with a 9 MiB volume type name were stored as labels
// and then made ListVolumes fail with RESOURCE_EXHAUSTED for every caller.
// They must be refused before anything is stored, naming the field, and
// listing must keep working, in pages, with every volume exactly once.
func TestOversizedTypeNameIsRefusedUpFront(t *testing.T) {
	d := NewDaemon(t)
	d.Start()
	c := driverClient(t, d)
	ctx := t.Context()

	big := &driverv1.VolumeType{Name: strings.Repeat("t", 9<<20)}
	for i := range 2 {
		_, err := c.CreateVolume(ctx, &driverv1.CreateVolumeRequest{Backend: "demo", VolumeId: fmt.Sprintf("big-%d", i), SizeGb: 1, VolumeType: big})
		if status.Code(err) != codes.InvalidArgument || fieldOf(err) != "volume_type.name" {
			t.Fatalf("CreateVolume with a 9 MiB type name: %v; want INVALID_ARGUMENT naming volume_type.name", err)
		}
		if msg := status.Convert(err).Message(); !strings.Contains(msg, "limit of 255") || len(msg) > 300 {
			t.Fatalf("message %.300q does not state the limit briefly", msg)
		}
	}

	const n = 5
	for i := range n {
		createVolume(t, c, fmt.Sprintf("paged-%d", i), 1)
	}
	seen := map[string]int{}
	pages := 0
	for tok := ""; ; {
		r, err := c.ListVolumes(ctx, &driverv1.ListVolumesRequest{Backend: "demo", PageSize: 2, PageToken: tok})
		if err != nil {
			t.Fatalf("ListVolumes page %d: %v", pages+1, err)
		}
		pages++
		for _, v := range r.GetVolumes() {
			seen[v.GetId()]++
		}
		if tok = r.GetNextPageToken(); tok == "" {
			break
		}
	}
	if pages != 3 {
		t.Errorf("%d pages of 2 for %d volumes, want 3", pages, n)
	}
	for i := range n {
		if id := fmt.Sprintf("paged-%d", i); seen[id] != 1 {
			t.Errorf("%s listed %d times, want once", id, seen[id])
		}
	}
	if len(seen) != n {
		t.Errorf("listed %v, want exactly the %d created volumes", seen, n)
	}
	_, err := c.ListVolumes(ctx, &driverv1.ListVolumesRequest{Backend: "demo", PageToken: "not-a-token"})
	if status.Code(err) != codes.InvalidArgument || fieldOf(err) != "page_token" {
		t.Errorf("a bad page token: %v, want INVALID_ARGUMENT naming page_token", err)
	}
}

// fieldOf returns the field a google.rpc.BadRequest detail names.
func fieldOf(err error) string {
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
