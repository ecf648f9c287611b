// Package paging splits the replies of the List RPCs into pages, as Google's
// AIP-158 describes: a request carries page_size and page_token, a reply
// carries next_page_token, and a client follows the tokens until one is
// empty.
//
// Pages are cut on two bounds: the number of items (page_size, default
// DefaultPageSize, at most MaxPageSize) and the reply's encoded size
// (MaxPageBytes), so that no reply can outgrow the gRPC message limit
// whatever the objects hold.
//
// A token records the key of the last item sent, so a listing walks the
// items in key order and resumes after that key. Keys must sort the way
// the engine orders the list (snapshots oldest first, operations newest
// first: TimeKey and NewestFirstKey help), since clients rely on that
// order across pages; items created or deleted
// between pages do not shift the others, and every item that exists for
// the whole walk is returned exactly once. The token also carries a digest
// of the request's filters; a token sent with other filters, or one that
// was not issued by Page, is INVALID_ARGUMENT.
package paging

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/volrep/volrep/errdefs"
)

const (
	// DefaultPageSize is the page size when a request leaves it 0.
	DefaultPageSize = 100
	// MaxPageSize is the largest page size; larger requests get this many.
	MaxPageSize = 1000
	// MaxPageBytes bounds the encoded items of one reply, a quarter of
	// gRPC's default 4 MiB message limit.
	MaxPageBytes = 1 << 20
	// maxPages bounds how many pages All follows, so a server that keeps
	// returning tokens cannot keep a client looping for ever.
	maxPages = 1 << 20
)

// Request is what a List request exposes to Page.
type Request interface {
	GetPageSize() int32
	GetPageToken() string
}

// tokenVersion starts every token, so a later format can refuse old ones
// by name instead of misreading them.
const tokenVersion = "p1"

// filterDigest covers the request's filters, so a token cannot be replayed
// against another listing.
func filterDigest(filters []string) []byte {
	h := sha256.New()
	for _, f := range filters {
		h.Write([]byte(f))
		h.Write([]byte{0})
	}
	return h.Sum(nil)[:8]
}

func encodeToken(filters []string, lastKey string) string {
	b := append([]byte(tokenVersion), filterDigest(filters)...)
	b = append(b, lastKey...)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeToken(tok string, filters []string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) < len(tokenVersion)+8 || string(b[:len(tokenVersion)]) != tokenVersion {
		return "", errdefs.InvalidArgument("page_token", "is not a token this server issued; send the next_page_token of the previous reply, or none for the first page")
	}
	b = b[len(tokenVersion):]
	if !bytes.Equal(b[:8], filterDigest(filters)) {
		return "", errdefs.InvalidArgument("page_token", "belongs to a listing with other filters; send the same filters as the first page, or start again without a token")
	}
	return string(b[8:]), nil
}

// timeOffset keeps the seconds of any time.Time (year 1 is about -6.2e10
// s from 1970) positive, so fixed-width decimal keys sort as times do.
const timeOffset = 1 << 62

// TimeKey encodes t so that keys sort as the times do, oldest first.
func TimeKey(t time.Time) string {
	return fmt.Sprintf("%019d.%09d", t.Unix()+timeOffset, t.Nanosecond())
}

// NewestFirstKey encodes t so that keys sort newest first.
func NewestFirstKey(t time.Time) string {
	return fmt.Sprintf("%019d.%09d", timeOffset-t.Unix(), 999_999_999-t.Nanosecond())
}

// Size returns the page size a request asks for: the default for 0, at
// most MaxPageSize, and INVALID_ARGUMENT for a negative one.
func Size(req Request) (int, error) {
	n := req.GetPageSize()
	switch {
	case n < 0:
		return 0, errdefs.InvalidArgument("page_size", "must not be negative, got %d; send 0 for the default of %d", n, DefaultPageSize)
	case n == 0:
		return DefaultPageSize, nil
	case n > MaxPageSize:
		return MaxPageSize, nil
	}
	return int(n), nil
}

// Page returns the page of items that req asks for and the token of the
// next page ("" on the last). key gives each item's unique sort key;
// filters are the request's other fields that select the items. items is
// not modified.
func Page[T proto.Message](items []T, key func(T) string, req Request, filters ...string) ([]T, string, error) {
	size, err := Size(req)
	if err != nil {
		return nil, "", err
	}
	after := ""
	if tok := req.GetPageToken(); tok != "" {
		if after, err = decodeToken(tok, filters); err != nil {
			return nil, "", err
		}
	}
	sorted := slices.Clone(items)
	slices.SortFunc(sorted, func(a, b T) int { return strings.Compare(key(a), key(b)) })
	start := 0
	if req.GetPageToken() != "" {
		start, _ = slices.BinarySearchFunc(sorted, after, func(it T, k string) int { return strings.Compare(key(it), k) })
		if start < len(sorted) && key(sorted[start]) == after {
			start++
		}
	}
	var page []T
	bytes := 0
	for i := start; i < len(sorted); i++ {
		// The first item always goes, so a page makes progress even if
		// one item alone is over the byte budget.
		n := proto.Size(sorted[i])
		if len(page) == size || (len(page) > 0 && bytes+n > MaxPageBytes) {
			return page, encodeToken(filters, key(page[len(page)-1])), nil
		}
		page = append(page, sorted[i])
		bytes += n
	}
	return page, "", nil
}

// All follows the pages of a listing: fetch gets the page for a token
// ("" for the first) and returns its items and the next token. It stops
// at an empty token, and refuses a server that repeats a token.
func All[T any](ctx context.Context, fetch func(ctx context.Context, token string) ([]T, string, error)) ([]T, error) {
	var out []T
	token := ""
	for range maxPages {
		items, next, err := fetch(ctx, token)
		if err != nil {
			return nil, err
		}
		out = append(out, items...)
		if next == "" {
			return out, nil
		}
		if next == token {
			return nil, fmt.Errorf("the server returned the same page token twice; it is not paging correctly")
		}
		token = next
	}
	return nil, fmt.Errorf("the listing did not end after %d pages", maxPages)
}
