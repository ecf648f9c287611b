package paging

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/volrep/volrep/errdefs"
)

type req struct {
	size  int32
	token string
}

func (r req) GetPageSize() int32   { return r.size }
func (r req) GetPageToken() string { return r.token }

func items(n, valueLen int) []*wrapperspb.StringValue {
	out := make([]*wrapperspb.StringValue, n)
	for i := range out {
		out[i] = wrapperspb.String(fmt.Sprintf("item-%05d", i) + strings.Repeat("x", valueLen))
	}
	return out
}

func key(s *wrapperspb.StringValue) string { return s.GetValue()[:10] }

// walk follows every page of items and returns the keys in order.
func walk(t *testing.T, all []*wrapperspb.StringValue, size int32, filters ...string) (keys []string, pages int) {
	t.Helper()
	token := ""
	for {
		page, next, err := Page(all, key, req{size, token}, filters...)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, it := range page {
			keys = append(keys, key(it))
		}
		if next == "" {
			return keys, pages
		}
		token = next
	}
}

func TestEveryItemOnceAcrossPages(t *testing.T) {
	all := items(25, 0)
	// Shuffled input: Page sorts by key itself.
	slices.Reverse(all)
	keys, pages := walk(t, all, 10)
	if pages != 3 {
		t.Fatalf("%d pages for 25 items of 10, want 3", pages)
	}
	want := make([]string, 25)
	for i := range want {
		want[i] = fmt.Sprintf("item-%05d", i)
	}
	if !slices.Equal(keys, want) {
		t.Fatalf("keys %v, want %v", keys, want)
	}
}

func TestDefaultAndMaximumPageSize(t *testing.T) {
	all := items(MaxPageSize+5, 0)
	page, next, err := Page(all, key, req{}, "")
	if err != nil || len(page) != DefaultPageSize || next == "" {
		t.Fatalf("size 0: %d items, next %q, err %v; want the default %d", len(page), next, err, DefaultPageSize)
	}
	page, _, err = Page(all, key, req{size: 1 << 30}, "")
	if err != nil || len(page) != MaxPageSize {
		t.Fatalf("huge size: %d items, err %v; want the maximum %d", len(page), err, MaxPageSize)
	}
	_, _, err = Page(all, key, req{size: -1}, "")
	if e := (*errdefs.Error)(nil); !errdefsAs(err, &e) || e.Field != "page_size" {
		t.Fatalf("negative size: %v, want INVALID_ARGUMENT naming page_size", err)
	}
}

// TestPageBytesBound: items of 100 KiB each fill MaxPageBytes long before
// the page size; no page may exceed it, and all items still come back.
func TestPageBytesBound(t *testing.T) {
	all := items(40, 100<<10)
	token := ""
	seen := 0
	for {
		page, next, err := Page(all, key, req{MaxPageSize, token})
		if err != nil {
			t.Fatal(err)
		}
		size := 0
		for _, it := range page {
			size += proto.Size(it)
		}
		if size > MaxPageBytes {
			t.Fatalf("page of %d bytes, over the %d budget", size, MaxPageBytes)
		}
		seen += len(page)
		if next == "" {
			break
		}
		token = next
	}
	if seen != 40 {
		t.Fatalf("saw %d items, want 40", seen)
	}
	// One item bigger than the budget still goes out alone: progress.
	huge := items(2, MaxPageBytes+1)
	if keys, pages := walk(t, huge, 10); len(keys) != 2 || pages != 2 {
		t.Fatalf("huge items: %v in %d pages, want 2 in 2", keys, pages)
	}
}

// TestChangesBetweenPages: deleting the last item sent and adding items
// before it neither repeats nor skips the others.
func TestChangesBetweenPages(t *testing.T) {
	all := items(6, 0)
	page, next, err := Page(all, key, req{size: 3})
	if err != nil || len(page) != 3 {
		t.Fatal(page, err)
	}
	// item-00002 (the token's key) is deleted; item-00001a is added before it.
	changed := append(slices.Clone(all[:2]), all[3:]...)
	changed = append(changed, wrapperspb.String("item-00001a"))
	rest, next2, err := Page(changed, key, req{3, next})
	if err != nil || next2 != "" {
		t.Fatal(rest, next2, err)
	}
	var got []string
	for _, it := range rest {
		got = append(got, key(it))
	}
	if want := []string{"item-00003", "item-00004", "item-00005"}; !slices.Equal(got, want) {
		t.Fatalf("second page %v, want %v", got, want)
	}
}

func TestBadTokens(t *testing.T) {
	all := items(5, 0)
	_, next, err := Page(all, key, req{2, ""}, "pool-a")
	if err != nil || next == "" {
		t.Fatal(next, err)
	}
	for name, tc := range map[string]struct {
		token, filter, want string
	}{
		"garbage":       {"not a token!", "pool-a", "is not a token this server issued"},
		"base64 junk":   {"AAAA", "pool-a", "is not a token this server issued"},
		"other filter":  {next, "pool-b", "belongs to a listing with other filters"},
		"other version": {"cDI" + next[3:], "pool-a", "is not a token this server issued"},
	} {
		_, _, err := Page(all, key, req{2, tc.token}, tc.filter)
		var e *errdefs.Error
		if !errdefsAs(err, &e) || e.Kind != errdefs.KindInvalidArgument || e.Field != "page_token" || !strings.Contains(e.Msg, tc.want) {
			t.Errorf("%s: %v, want INVALID_ARGUMENT page_token %q", name, err, tc.want)
		}
	}
}

func TestAllFollowsPagesAndStopsOnARepeatedToken(t *testing.T) {
	all := items(7, 0)
	fetch := func(_ context.Context, token string) ([]*wrapperspb.StringValue, string, error) {
		return Page(all, key, req{3, token})
	}
	got, err := All(t.Context(), fetch)
	if err != nil || len(got) != 7 {
		t.Fatalf("All: %d items, %v", len(got), err)
	}
	calls := 0
	_, err = All(t.Context(), func(context.Context, string) ([]int, string, error) {
		calls++
		return []int{1}, "same", nil
	})
	if err == nil || calls != 2 {
		t.Fatalf("a server repeating its token: err %v after %d calls, want an error after 2", err, calls)
	}
}

func errdefsAs(err error, target **errdefs.Error) bool { return errors.As(err, target) }

// TestTimeKeysSortAsTimes: the keys of lists the engine orders by time
// (snapshots oldest first, operations newest first) must sort as the
// times do, or paging would reorder them.
func TestTimeKeysSortAsTimes(t *testing.T) {
	times := []time.Time{
		{}, // year 1
		time.Unix(-1, 5),
		time.Unix(0, 0),
		time.Unix(0, 1),
		time.Unix(1700000000, 999_999_999),
		time.Unix(1700000001, 0),
		time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC),
	}
	for i := 1; i < len(times); i++ {
		a, b := times[i-1], times[i]
		if TimeKey(a) >= TimeKey(b) {
			t.Errorf("TimeKey(%v) %q >= TimeKey(%v) %q", a, TimeKey(a), b, TimeKey(b))
		}
		if NewestFirstKey(a) <= NewestFirstKey(b) {
			t.Errorf("NewestFirstKey(%v) %q <= NewestFirstKey(%v) %q", a, NewestFirstKey(a), b, NewestFirstKey(b))
		}
	}
}
