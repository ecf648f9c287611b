package main

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/volrep/volrep/array/mediator"
	"github.com/volrep/volrep/internal/etcdtest"
)

// The mediator commands against a real etcd: show a pod's holder and
// mark, refuse to forget a mark without the operator's word or while its
// array holds the key, and forget it once that array is gone.
func TestMediatorForgetMark(t *testing.T) {
	e := etcdtest.Start(t, "", "")
	med := "etcd://" + e.Endpoint()
	mc, err := mediator.New([]string{e.Endpoint()}, mediator.Options{TTL: 2 * time.Second, PreferDelay: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Close()
	cb := mc.ClaimToCarry("pod1", "array-b", false, nil)
	defer cb.Close(context.Background())
	for deadline := time.Now().Add(5 * time.Second); !cb.Held(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("array-b did not take the pod's key")
		}
	}
	if r := volrep(t, nil, "mediator", "show", "pod1", "--mediator", med); r.code != 0 ||
		!regexp.MustCompile(`pod1\s+array-b\s+array-b`).MatchString(r.stdout) {
		t.Fatalf("show while array-b carries the pod: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	forget := []string{"mediator", "forget-mark", "pod1", "--array", "array-b", "--mediator", med}
	for _, c := range []struct {
		args []string
		code int
		why  string
	}{
		{forget, exitUsage, "--accept-data-loss"},
		{append(forget, "--accept-data-loss"), exitPrecondition, `array "array-b" holds pod pod1's key`},
		{[]string{"mediator", "forget-mark", "pod1", "--array", "array-b", "--accept-data-loss"}, exitUsage, "--mediator must name"},
	} {
		if r := volrep(t, nil, c.args...); r.code != c.code || !strings.Contains(r.stderr, c.why) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d saying %s", c.args, r.code, r.stderr, c.code, c.why)
		}
	}
	// array-b is gone: its key ends, its mark stays until the operator
	// gives it up.
	cb.Close(context.Background())
	if r := volrep(t, nil, append(forget, "--accept-data-loss")...); r.code != 0 || !strings.Contains(r.stdout, "mark on pod pod1 is gone") {
		t.Fatalf("forget-mark with array-b gone: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := volrep(t, nil, "-o", "json", "mediator", "show", "pod1", "--mediator", med); r.code != 0 ||
		!regexp.MustCompile(`"marked":\s*""`).MatchString(r.stdout) {
		t.Fatalf("show after forget-mark: exit %d\n%q%s", r.code, r.stdout, r.stderr)
	}
}
