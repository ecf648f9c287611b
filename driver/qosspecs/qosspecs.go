// Package qosspecs turns a Cinder volume type's QoS specs (those of its
// QoS association with consumer "back-end" or "both") into the limit an
// array enforces on the volume.
package qosspecs

import (
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/errdefs"
)

// PerGB is the suffix of a key whose value is multiplied by the volume's
// size in GiB.
const PerGB = "_per_gb"

// dim is an accepted key without PerGB, with the field of array.QoS it
// sets.
type dim struct {
	key string
	set func(*array.QoS, int64)
}

var dims = []dim{
	{"total_iops_sec", func(q *array.QoS, n int64) { q.TotalIOPS = n }},
	{"read_iops_sec", func(q *array.QoS, n int64) { q.ReadIOPS = n }},
	{"write_iops_sec", func(q *array.QoS, n int64) { q.WriteIOPS = n }},
	{"total_bytes_sec", func(q *array.QoS, n int64) { q.TotalBytesPerSec = n }},
	{"read_bytes_sec", func(q *array.QoS, n int64) { q.ReadBytesPerSec = n }},
	{"write_bytes_sec", func(q *array.QoS, n int64) { q.WriteBytesPerSec = n }},
}

// Keys returns every accepted key, sorted.
func Keys() []string {
	var out []string
	for _, d := range dims {
		out = append(out, d.key, d.key+PerGB)
	}
	slices.Sort(out)
	return out
}

// maxLimit bounds a limit (a value, or a per-GB value times the size) so
// that arithmetic on it cannot overflow; no array does 2^50 IOPS.
const maxLimit = 1 << 50

// Parse returns the limit specs ask for on a volume of sizeGB GiB. Every
// key must be one of Keys, every value a whole number > 0, and a limit
// may be given absolutely or per GB, not both; a refusal is
// INVALID_ARGUMENT naming field.key. Empty specs limit nothing.
func Parse(field string, specs map[string]string, sizeGB int64) (array.QoS, error) {
	var q array.QoS
	// In key order, so the same bad specs always name the same key.
	for _, k := range slices.Sorted(maps.Keys(specs)) {
		base, perGB := strings.CutSuffix(k, PerGB)
		i := slices.IndexFunc(dims, func(d dim) bool { return d.key == base })
		if i < 0 {
			return array.QoS{}, errdefs.InvalidArgument(field+"."+k, "%q is not a QoS spec volrep enforces; use one of %s (remove the key from the QoS specs, or associate them with consumer front-end)",
				k, strings.Join(Keys(), ", "))
		}
		n, err := strconv.ParseInt(strings.TrimSpace(specs[k]), 10, 64)
		if err != nil || n <= 0 || n > maxLimit {
			return array.QoS{}, errdefs.InvalidArgument(field+"."+k, "%q is not a whole number between 1 and %d", specs[k], int64(maxLimit))
		}
		other := base
		if !perGB {
			other += PerGB
		}
		if _, both := specs[other]; both {
			return array.QoS{}, errdefs.InvalidArgument(field+"."+k, "both %s and %s are set; give the limit either absolutely or per GB", k, other)
		}
		if perGB {
			// A volume under 1 GiB (never, from Cinder) counts as 1.
			if size := max(sizeGB, 1); size > maxLimit/n {
				n = maxLimit
			} else {
				n *= size
			}
		}
		dims[i].set(&q, n)
	}
	return q, nil
}
